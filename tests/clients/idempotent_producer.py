"""An idempotent producer (librdkafka) sending N records; the test puts a proxy between it
and the server that drops a produce response and the connection, so the producer retries.
Usage: idempotent_producer.py BOOTSTRAP TOPIC N"""
import sys
from confluent_kafka import Producer
from common import expect, ok

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
errors = []
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
              "batch.num.messages": 50, "message.timeout.ms": 30000, "retry.backoff.ms": 100})
for i in range(n):
    p.produce(topic, partition=0, value=f"idem-{i}", on_delivery=lambda e, m: errors.append(str(e)) if e else None)
    if i % 50 == 49:
        p.poll(0)
expect(p.flush(60) == 0, "records left unflushed")
expect(not errors, f"delivery errors: {errors[:3]}")
ok(produced=n)
