-- When everything an ended import left behind (its uploaded file and the file's metadata in the
-- object store, its staging table) was removed and its terminal event confirmed on the progress
-- stream. NULL on an ended import: the worker's sweep finishes the cleanup.
ALTER TABLE imports ADD COLUMN cleaned_at timestamptz;
-- Imports that ended before this column existed were cleaned by the worker that ended them, or
-- left an upload that the sweep's orphan pass removes.
UPDATE imports SET cleaned_at = finished_at WHERE status IN ('completed', 'error', 'cancelled');
CREATE INDEX imports_uncleaned ON imports (finished_at) WHERE cleaned_at IS NULL;
-- The sweep asks whether a stored upload still belongs to a queued or running import.
CREATE INDEX imports_active_object_key ON imports (object_key) WHERE status IN ('queued', 'processing');
