"""The lens features, from an accepted exam to the lens service.

- `views`: which cohort columns live in which Feast feature view, and which device kind measures them;
- `ingest`: the push an accepted exam makes, and the sink the OCR service's outbox drains into;
- `outbox`: the one serialized writer of those pushes, fed by the results database's durable queue;
- `online`: the online-store interface (`OnlineStore`: read eyes, push rows) and its Feast
  implementation, the one seam serving code reads and writes features through;
- `offline_log`: the offline log every push appends to (parquet files or PostgreSQL tables);
- `repository`: the Feast repository (`feature_repo/`, package data): make it, fill its offline
  data, apply and materialize it, and read training features as known at each time.
"""
