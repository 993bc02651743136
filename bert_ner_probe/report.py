"""PLACEHOLDER — being written by a helper."""
from hydra.experimental.callback import Callback


class ReportCallback(Callback):
    pass


def cli():
    raise SystemExit("not yet")
