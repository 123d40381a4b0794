from cagette_runtime.migrations import run_env
from cagette_web.tables import metadata

run_env(metadata)
