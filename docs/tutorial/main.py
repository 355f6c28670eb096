"""The tutorial's program: it calls the task, under a ``__main__`` guard."""

from tasks import count_words

if __name__ == "__main__":
    handles = [count_words(line) for line in ["one two", "three four five", "six"]]
    print([handle.result(timeout=30) for handle in handles])
