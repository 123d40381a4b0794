from cagette_runtime.cli import run_service_cli

from .app import NAME, build_service

run_service_cli(NAME, build_service, "cagette_payments.app:create_app")
