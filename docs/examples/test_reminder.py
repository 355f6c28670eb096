import offload
from offload.testing import FakeClock, run_until_idle


def test_a_reminder_is_sent_after_a_minute() -> None:
    clock = FakeClock()
    app = offload.App(clock=clock)
    sent: list[int] = []

    @app.task
    def remind(user_id: int) -> None:
        sent.append(user_id)

    remind.options(delay=60)(42)
    run_until_idle(app)  # nothing due yet: returns at once
    assert sent == []
    clock.advance(60)
    run_until_idle(app)  # now it ran
    assert sent == [42]
    app.shutdown()
