-- A rescan writes every finding it sees again (its last_seen moves). Half of each page is kept
-- free so the new version stays on its page (a HOT update: no index entry written); the page
-- is pruned of the old versions when next read. Applies to pages written from now on.
ALTER TABLE vulnerabilities SET (fillfactor = 50);
-- How long each import's merge took (from its last row read to its commit) and which kind of
-- merge it was (`first`, `repeat`: not a newer scan, `rescan`: a newer scan): the ETA of the
-- tenant's next merge of that kind and format starts from its last one.
ALTER TABLE imports ADD COLUMN merge_ms bigint, ADD COLUMN merge_kind text
    CHECK (merge_kind IN ('first', 'repeat', 'rescan'));
