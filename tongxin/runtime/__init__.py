"""Runtime kernel: settings, Kafka and Mongo plumbing, outbox, consumer runner, metrics."""
