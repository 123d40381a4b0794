from cagette_runtime.migrations import run_env

from cagette_payments.tables import metadata

run_env(metadata)
