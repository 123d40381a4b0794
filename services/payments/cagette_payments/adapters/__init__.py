"""Adapters to the outside: statement files (statements.py), EPC QR images (epc_qr.py)."""
