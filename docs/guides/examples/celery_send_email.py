"""The seed article's Celery example on offload: ``send_email.delay(...)``.

Start a worker, then run the program, both in this folder::

    offload worker celery_send_email:app      # Celery: celery -A tasks worker
    python celery_send_email.py

The worker imports this file to find ``send_email``; the call sits under
``if __name__ == "__main__":`` so that importing it makes no call.
"""

import os

import offload

# One URL is Celery's broker and result backend at once. SQLite needs no
# server; OFFLOAD_URL=redis://localhost:6379/0 is the article's Redis.
app = offload.App(os.environ.get("OFFLOAD_URL", "sqlite:///jobs.db"))


@app.task(retries=3, backoff=offload.Backoff(base=1, cap=60))
def send_email(to_address: str, subject: str, body: str) -> str:
    # Simulate sending an email
    print(f"Sending email to {to_address}: {subject}", flush=True)
    # Actual email sending logic here
    return f"Email sent to {to_address}"


if __name__ == "__main__":
    result = send_email.delay("user@example.com", "Welcome!", "Hello there.")
    print(f"job {result.id}")
    print(result.result(timeout=30))  # Celery: result.get(timeout=30)
    # Any process that reaches the broker reads it by id (Celery: AsyncResult(id)):
    print(app.handle(result.id).state)
