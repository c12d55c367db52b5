-- Status changes (SPEC §3 "Status changes", §4): conversions.updated_at,
-- shop sources, and the history of every change.

-- updated_at: the last status change, = created_at until one. Existing rows
-- are backfilled in this transaction (ADD COLUMN without a default, then one
-- UPDATE: the table is rewritten once, under the migration's ACCESS
-- EXCLUSIVE lock, so conversions wait — and spool if it takes longer than
-- the commit timeout — until it commits).
ALTER TABLE conversions ADD COLUMN updated_at timestamptz;
UPDATE conversions SET updated_at = created_at;

-- Rolling upgrade: a tracker of the previous version, still running after a
-- new one migrated, inserts without updated_at. Instead of failing, its rows
-- get updated_at = created_at from this trigger. Trackers of this version
-- write updated_at themselves, so the WHEN clause (evaluated without calling
-- the function) skips the function for their rows. Its cost on the group
-- commit is measured in docs/benchmarks.md (a BEFORE ROW trigger makes COPY
-- insert row by row instead of in multi-row buffers).
CREATE FUNCTION conversions_default_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := coalesce(NEW.updated_at, NEW.created_at);
    RETURN NEW;
END
$$;
CREATE TRIGGER conversions_default_updated_at
    BEFORE INSERT ON conversions
    FOR EACH ROW WHEN (NEW.updated_at IS NULL)
    EXECUTE FUNCTION conversions_default_updated_at();

ALTER TABLE conversions ALTER COLUMN updated_at SET NOT NULL;

-- A shop's webhook makes conversions too (SPEC §8).
ALTER TABLE conversions DROP CONSTRAINT conversions_source_check;
ALTER TABLE conversions ADD CONSTRAINT conversions_source_check
    CHECK (source IN ('postback', 'js', 'img', 'iframe', 'shopify', 'woocommerce'));

-- Every status change (SPEC §4), in the order applied: for one conversion
-- each from_status is the previous to_status.
CREATE TABLE conversion_status_changes (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversion_id uuid        NOT NULL REFERENCES conversions (id),
    changed_at    timestamptz NOT NULL,
    from_status   text        NOT NULL CHECK (from_status IN ('approved', 'pending', 'declined')),
    to_status     text        NOT NULL CHECK (to_status IN ('approved', 'pending', 'declined')),
    source        text        NOT NULL CHECK (source IN ('postback', 'shopify', 'woocommerce')),
    -- The transitions SPEC §3 allows; the writer refuses others before this.
    CHECK ((from_status, to_status) IN (('pending', 'approved'), ('pending', 'declined'), ('approved', 'declined')))
);
CREATE INDEX conversion_status_changes_conversion ON conversion_status_changes (conversion_id, changed_at, id);
