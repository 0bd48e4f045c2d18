"""Queue names: a priority's queue (`high`), or a node's own (`web1.high`), and the `rq worker` that
reads them."""

import re
import sys

from .defaults import QUEUES
from .exceptions import PushRefused

#: Node queues are named NODE.PRIORITY; node names are plain words.
NODE_SEPARATOR = "."
NODE_NAME = re.compile(
    r"[A-Za-z0-9_][A-Za-z0-9_-]*"
)  # not "-x": `rq worker -x.high` reads an option


def queue_name(priority, node=None):
    """The RQ queue for a priority, on one node's own queues (`web1.high`) or the shared ones
    (`high`)."""
    if priority not in QUEUES:
        raise PushRefused(f"unknown priority {priority!r}; choose one of {', '.join(QUEUES)}")
    if node is None:
        return priority
    if not NODE_NAME.fullmatch(node):
        raise PushRefused(f"bad node name {node!r}: use letters, digits, '_' and '-' (not first)")
    return f"{node}{NODE_SEPARATOR}{priority}"


def split_queue_name(queue):
    """(node or None, priority) of a queue name; priority None for a queue logjobs did not name."""
    node, _, priority = queue.rpartition(NODE_SEPARATOR)
    return (node or None, priority) if priority in QUEUES else (None, None)


def node_worker_queues(node):
    """The queues a worker on `node` listens to, in priority order: each priority's node queue
    first."""
    return [q for priority in QUEUES for q in (queue_name(priority, node), priority)]


def rq_command(*args):
    """`rq ARGS...` of the environment logjobs runs in, however it was installed (a venv, --user),
    and wherever PATH points: RQ's CLI run by this Python."""
    return [sys.executable, "-m", "rq.cli", *args]
