-- Findings' keys compare byte by byte (collation "C"), whatever the database's locale: every
-- new finding is placed in two indexes by these columns, and under a linguistic collation each
-- comparison goes through the C library's strcoll, a third of a first import's writing time.
-- Equality is unchanged (it was already byte-wise); only the indexes' internal order changes,
-- and no query orders by these columns. The tables are not rewritten; their indexes are rebuilt.
--
-- Columns compared across tables keep one collation everywhere: the staging tables (the
-- template and those of imports under way) first, so a merge holding one finishes before the
-- findings are locked.
DO $$
DECLARE
    staging regclass;
BEGIN
    FOR staging IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relname LIKE 'import\_staging\_%' AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
    LOOP
        EXECUTE format(
            'ALTER TABLE %s ALTER COLUMN asset TYPE text COLLATE "C", ALTER COLUMN check_id TYPE text COLLATE "C",
                            ALTER COLUMN protocol TYPE text COLLATE "C", ALTER COLUMN cves TYPE text[] COLLATE "C"',
            staging);
    END LOOP;
END $$;

ALTER TABLE vulnerabilities
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN scanner TYPE text COLLATE "C",
    ALTER COLUMN asset TYPE text COLLATE "C",
    ALTER COLUMN check_id TYPE text COLLATE "C",
    ALTER COLUMN protocol TYPE text COLLATE "C",
    ALTER COLUMN cves TYPE text[] COLLATE "C",
    ALTER COLUMN state TYPE text COLLATE "C";

ALTER TABLE scanner_checks
    ALTER COLUMN scanner TYPE text COLLATE "C",
    ALTER COLUMN check_id TYPE text COLLATE "C";
