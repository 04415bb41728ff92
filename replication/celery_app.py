"""The island's Celery app: an embedded transport on local disk by default (no server to run),
Redis when ``[replication] broker`` names one. One queue per island, so islands may share a
Redis. Results are not kept: the catalog's ``transfers`` rows are the jobs' state."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

__all__ = ["make_app", "queue_name", "COPY_TASK", "COPY_BATCH_TASK", "LEAD_SECONDS"]

COPY_TASK = "archipel.copy_partition"
# Several files of one request in one message, copied one after the other by one worker
# thread: sending a message cost the island 0.85 ms of CPU (Celery's send_task), so a
# 64-file rule cost 54 ms, right when the first replica was being reported.
COPY_BATCH_TASK = "archipel.copy_partitions"
# How long a request's other files wait while its first file copies alone: the island sends
# them once it is copied, and a worker holding one lets the first go before it starts. The
# first replica then has the machine to itself (a rule's first file lands in tens of ms, not
# after 64 jobs were sent and four files shared the link), and a slow or dead first source
# holds nobody up for long.
LEAD_SECONDS = 0.5


def queue_name(island: str) -> str:
    return f"archipel.{island}"


def make_app(broker: str, queue_dir: str | Path, island: str) -> Celery:
    """The app of island ``island``: Redis at ``broker``, or files in ``queue_dir`` when empty."""
    app = Celery(f"archipel-{island}", set_as_current=False)
    conf: dict = {
        "task_default_queue": queue_name(island),
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Reserved messages per thread: a thread never waits a broker poll between two files.
        "worker_prefetch_multiplier": 4,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": 3,
        "task_serializer": "json",
        "accept_content": ["json"],
    }
    if broker:
        conf["broker_url"] = broker
        conf["broker_transport_options"] = {"visibility_timeout": 3600}
    else:
        folder = Path(queue_dir)
        processed = folder / "processed"
        processed.mkdir(parents=True, exist_ok=True)
        from replication.fsqueue import SCHEME

        conf["broker_url"] = f"{SCHEME}://"  # Kombu's filesystem transport, messages written whole
        conf["broker_transport_options"] = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            # A taken message is renamed here (atomic within one folder), so two workers never
            # take the same one, and deleted once read (replication/fsqueue.py).
            "processed_folder": str(processed),
            # Kombu's exchange tables, which it writes to ./control otherwise (the caller's folder).
            "control_folder": str(folder / "control"),
            "store_processed": True,
            # An idle worker waits for the folder to change (replication/fsqueue.py); it lists
            # the folder this often only without inotify, or while it holds all the messages
            # it may take (a new job then waits 2.5 ms on average, not 50 at Kombu's 0.1 s).
            "polling_interval": 0.005,
        }
    app.conf.update(conf)
    return app
