-- 004: reserved for the observability branch (issue #14), which numbers its migration 004. This
-- placeholder keeps the versions gapless on the flow-control branch and does nothing; when the
-- real 004 is merged, it replaces this file.
SELECT 1;
