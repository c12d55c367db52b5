-- The portal's read-only PostgreSQL role (SPEC §7). Run once, after the
-- trackers have migrated the database, as a superuser or the owner of
-- `conversions`:
--
--   psql "$DATABASE_URL" -v role=promo_portal -v password="$PORTAL_DB_PASSWORD" \
--        -f config/portal/readonly-role.sql
--
-- The portal can read conversions and their status history and nothing else; every transaction it
-- opens is read-only as well (the role default here, and the portal sets it
-- on its connections too).
CREATE ROLE :"role" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
ALTER ROLE :"role" SET default_transaction_read_only = on;
GRANT USAGE ON SCHEMA public TO :"role";
GRANT SELECT ON conversions TO :"role";
-- Since migration 2 (status changes). A role made before it needs this line
-- once, after the trackers migrated:
--   psql "$DATABASE_URL" -c 'GRANT SELECT ON conversion_status_changes TO promo_portal'
GRANT SELECT ON conversion_status_changes TO :"role";
