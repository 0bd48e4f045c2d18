"""logjobs: count what matters in log files, on all your machines, as reliable RQ jobs."""

__version__ = "0.2.0"
