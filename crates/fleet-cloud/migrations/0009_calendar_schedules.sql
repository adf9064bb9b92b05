-- Reference cloud: recurring jobs on the calendar (once / daily / weekly / monthly at a
-- time of day in a time zone), beside the fixed-period ones. `recurrence` holds the
-- checked document (every_ms is 0 then); `last_ms` is when the schedule last queued a job.
ALTER TABLE schedules ADD COLUMN recurrence TEXT;
ALTER TABLE schedules ADD COLUMN last_ms INTEGER;
