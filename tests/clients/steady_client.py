"""A well-behaved client: produces records at a steady pace (acks=all) while a consumer
reads them back, for SECONDS; any error is a failure; at the end every produced record
must have been consumed once, in order, per partition.
Usage: steady_client.py BOOTSTRAP TOPIC SECONDS"""
import sys
import time
from confluent_kafka import Producer, Consumer, TopicPartition, OFFSET_BEGINNING
from common import expect, fail, ok

bootstrap, topic, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
errors = []
acked = []
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "enable.idempotence": True})
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "steady", "enable.auto.commit": False})
c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])


def delivered(err, msg):
    if err:
        errors.append(str(err))
    else:
        acked.append(msg.value().decode())


consumed = []
i = 0
end = time.time() + seconds
while time.time() < end:
    p.produce(topic, partition=0, value=f"steady-{i}", on_delivery=delivered)
    i += 1
    p.poll(0)
    m = c.poll(0.01)
    if m is not None:
        if m.error():
            fail(f"consumer error: {m.error()}")
        consumed.append(m.value().decode())
expect(p.flush(30) == 0, "producer did not flush")
deadline = time.time() + 20
while len(consumed) < i and time.time() < deadline:
    m = c.poll(0.2)
    if m is not None and not m.error():
        consumed.append(m.value().decode())
c.close()
expect(not errors, f"producer errors: {errors[:3]}")
expect(len(acked) == i, f"acked {len(acked)} of {i}")
want = [f"steady-{k}" for k in range(i)]
expect(consumed == want, f"consumed {len(consumed)} of {i}; first difference at "
       f"{next((k for k, (a, b) in enumerate(zip(consumed, want)) if a != b), min(len(consumed), i))}")
ok(records=i)
