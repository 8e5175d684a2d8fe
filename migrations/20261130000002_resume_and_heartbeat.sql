-- Where a running import's staging load stands. Written in the transaction that commits each
-- slice of the load (the COPY of that slice and this row commit together), so a later attempt
-- of the import continues after the last committed slice instead of starting over. Removed with
-- the staging table.
CREATE TABLE import_resume (
    import_id   uuid        PRIMARY KEY REFERENCES imports (id) ON DELETE CASCADE,
    -- The attempt that committed the slice (for diagnostics).
    attempt     integer     NOT NULL,
    -- First physical line not staged yet, and the byte offset in the file where it starts.
    next_line   bigint      NOT NULL,
    byte_offset bigint      NOT NULL,
    -- Line of the last staged row.
    last_line   bigint      NOT NULL,
    -- Counters of the rows before next_line.
    rows        bigint      NOT NULL,
    invalid     bigint      NOT NULL,
    findings    bigint      NOT NULL,
    staged      bigint      NOT NULL,
    folded      bigint      NOT NULL,
    -- The first invalid rows, as the loader keeps them.
    row_errors  jsonb       NOT NULL DEFAULT '[]',
    -- The whole file is staged.
    at_end      boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The attempt holding a processing import touches heartbeat_at every few seconds; a stale one
-- means its worker stopped responding, and watchers are told so once per attempt
-- (stalled_attempt records the attempt they were told about).
ALTER TABLE imports ADD COLUMN heartbeat_at timestamptz, ADD COLUMN stalled_attempt integer;
CREATE INDEX imports_processing_heartbeat ON imports (heartbeat_at) WHERE status = 'processing';
