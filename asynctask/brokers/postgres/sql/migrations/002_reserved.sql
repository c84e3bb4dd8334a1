-- 002: reserved for the web dashboard branch (issue #15), which numbers its migration 002. This
-- placeholder keeps the versions gapless on the flow-control branch and does nothing; when the
-- real 002 is merged, it replaces this file.
SELECT 1;
