"""Print retained/live messages on the given topic filters for N seconds (paho-mqtt 2.x).
Usage: python mqtt_dump.py PORT SECONDS FILTER...   (run with the HA venv python)"""

import sys
import time

import paho.mqtt.client as mqtt

port, secs, filters = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.on_connect = lambda cl, *_: [cl.subscribe(f, 1) for f in filters]
c.on_message = lambda cl, u, m: print(
    f"{m.topic} retain={int(m.retain)} {m.payload.decode(errors='replace')}", flush=True
)
c.connect("127.0.0.1", port)
c.loop_start()
time.sleep(secs)
c.loop_stop()
