-- Executed once by the postgres image's entrypoint, only when the data volume is empty
-- (mounted into /docker-entrypoint-initdb.d by docker-compose.yml).
-- One database per service; no service reads another's database.
-- Tables are created by each service's Alembic migrations (`python -m cagette_<svc> migrate`,
-- also run by `serve` at start-up), not here.
CREATE DATABASE cagette_orders;
CREATE DATABASE cagette_ledger;
CREATE DATABASE cagette_payments;
CREATE DATABASE cagette_notifications;
CREATE DATABASE cagette_web;
