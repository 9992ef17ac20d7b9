-- 0006: reserved for another branch's migration (rotation schedule), which
-- replaces this file when both are merged: migrations are numbered without
-- gaps, and 0007 follows it. It changes nothing.
SELECT 1;
