from cagette_orders.tables import metadata
from cagette_runtime.migrations import run_env

run_env(metadata)
