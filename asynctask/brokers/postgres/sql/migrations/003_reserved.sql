-- 003: reserved for the reliability branch (issue #11), which numbers its migration 003. This
-- placeholder keeps the versions gapless until then and does nothing; when the real 003 is
-- merged, it replaces this file.
SELECT 1;
