"""Huey's periodic tasks on offload: ``@app.periodic(...)``.

Start a worker (it runs the schedules too), then, if you like, the program::

    offload worker huey_periodic:app          # Huey: huey_consumer huey_periodic.huey
    offload schedules --app huey_periodic:app # each schedule, its last and next run
    python huey_periodic.py                   # runs the backup once now, off schedule
"""

import os
from datetime import datetime, timezone

import offload

# Huey: huey = SqliteHuey(filename="huey.db")
app = offload.App(os.environ.get("OFFLOAD_URL", "sqlite:///huey.db"))


# Huey: @huey.periodic_task(crontab(minute="0", hour="3"))
@app.periodic(cron="0 3 * * *", retries=2)
def nightly_backup() -> str:
    print("backing up", flush=True)
    return "backup done"


# Huey's crontab counts in minutes; offload's every= takes seconds.
@app.periodic(every=1)
def heartbeat() -> str:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(f"heartbeat at {now}", flush=True)
    return now


if __name__ == "__main__":
    # A periodic task is still a task: calling it runs it once, now.
    print(nightly_backup().result(timeout=30))
