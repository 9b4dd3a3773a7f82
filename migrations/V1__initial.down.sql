-- Reverts V1__initial: nothing to drop, the baseline creates no tables.
SELECT 1;
