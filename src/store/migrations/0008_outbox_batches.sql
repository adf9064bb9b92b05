-- Several messages go to the cloud in one request (issue 16). The cloud counts a request
-- once by its idempotency key, so a batch must be resent exactly as it was first sent,
-- even after a crash between sending it and recording the answer: its members are fixed
-- here, under the batch's key, before the first attempt. NULL: not sent yet.
ALTER TABLE outbox ADD COLUMN batch_id TEXT;
CREATE INDEX outbox_batched ON outbox(id) WHERE batch_id IS NOT NULL;
CREATE INDEX outbox_by_batch ON outbox(batch_id) WHERE batch_id IS NOT NULL;
