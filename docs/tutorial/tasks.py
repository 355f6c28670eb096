"""The tutorial's tasks: a module of its own, so that a worker can import it."""

import offload


@offload.task(retries=2)
def count_words(text: str) -> int:
    """Count the words of ``text``; the work is quick, the point is where it runs."""
    return len(text.split())
