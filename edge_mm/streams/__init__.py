"""Camera streams in, events out.

One reader thread per stream decodes continuously into a one-frame slot (``slot.py``, ``reader.py``,
``sources.py``); an analyser takes the newest frame at the stream's ``fps`` and runs the served models
through their admission, after REST requests (``detect.py``, ``analyser.py``); a tracker gives objects
ids and turns them into start/update/end events (``tracker.py``, ``events.py``); events go out over
MQTT, webhooks and Server-Sent Events (``mqtt.py``, ``webhooks.py``, ``hub.py``). ``manager.py`` owns
them all; ``store.py`` keeps streams added at run time in SQLite.
"""
