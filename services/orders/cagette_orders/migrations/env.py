from cagette_runtime.migrations import run_env

from cagette_orders.tables import metadata

run_env(metadata)
