"""Round trip through librdkafka (confluent-kafka): keys, headers, timestamps; seek by offset
and by timestamp. Usage: roundtrip_confluent.py BOOTSTRAP TOPIC PARTITIONS N"""
import sys
import time
from confluent_kafka import Producer, Consumer, TopicPartition, OFFSET_BEGINNING
from common import expect, fail, ok

bootstrap, topic, parts, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base_ts = 1_700_000_000_000
errors = []
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4", "acks": "all"})
for i in range(n):
    p.produce(topic, key=f"key-{i}", value=f"value-{i}", partition=i % parts, timestamp=base_ts + i * 1000,
              headers=[("idx", str(i).encode()), ("kind", b"roundtrip")],
              on_delivery=lambda e, m: errors.append(e) if e else None)
expect(p.flush(30) == 0, "messages left unflushed")
expect(not errors, f"delivery errors: {errors[:3]}")

c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rt-confluent", "enable.auto.commit": False})
c.assign([TopicPartition(topic, q, OFFSET_BEGINNING) for q in range(parts)])
seen = {}
deadline = time.time() + 30
while len(seen) < n and time.time() < deadline:
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        fail(f"consume error {m.error()}")
    i = int(dict(m.headers())["idx"])
    expect(m.key() == f"key-{i}".encode(), f"key of {i}: {m.key()}")
    expect(m.value() == f"value-{i}".encode(), f"value of {i}: {m.value()}")
    expect(m.timestamp()[1] == base_ts + i * 1000, f"timestamp of {i}: {m.timestamp()}")
    expect(dict(m.headers())["kind"] == b"roundtrip", "header kind")
    expect(m.partition() == i % parts, f"partition of {i}")
    expect(i not in seen, f"record {i} delivered twice")
    seen[i] = m.offset()
expect(len(seen) == n, f"consumed {len(seen)} of {n}")

# Seek by offset: partition 0 from its 3rd record.
c.assign([TopicPartition(topic, 0, 2)])
m = None
while m is None or m.error():
    m = c.poll(5)
expect(m.offset() == 2, f"from offset 2 got {m.offset()}")
expect(m.key() == f"key-{2 * parts}".encode(), f"record at offset 2 of partition 0: {m.key()}")

# Seek by time: the first record at or after the timestamp of record i.
i = n // 2
q = i % parts
found = c.offsets_for_times([TopicPartition(topic, q, base_ts + i * 1000)], timeout=10)[0]
expect(found.offset == seen[i], f"offset for time of record {i}: {found.offset}, want {seen[i]}")
later = c.offsets_for_times([TopicPartition(topic, q, base_ts + n * 1000 + 1)], timeout=10)[0]
expect(later.offset == -1, f"offset for a time after the end: {later.offset}")
c.close()
ok(consumed=len(seen))
