"""How every job runs: its steps one after another in the run's own process, and the loggers a run has.

In-process, not a process per step (Dagster's default): a run's steps form one chain (fetch, normalize,
ROAS; the checks after their assets), so separate processes buy no parallelism, and each one costs a
Python start and a load of the definitions (seconds; most of the demo's time before). A run launched by
the daemon, the UI or `dagster job launch` still gets a process (or a pod) of its own. The `meta_api`
pool limits the steps that call Meta across runs either way.
"""

import dagster as dg

from metaspend_pipeline.defs.common.progress import LOGGER_KEY, metaspend_progress


@dg.definitions
def execution() -> dg.Definitions:
    return dg.Definitions(
        executor=dg.in_process_executor,
        loggers={"console": dg.colored_console_logger, LOGGER_KEY: metaspend_progress},
    )
