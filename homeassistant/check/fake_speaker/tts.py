import json
import pathlib
import time

import homeassistant.components.demo as demo
from homeassistant.components.tts import TextToSpeechEntity

from . import SPOKEN

MP3 = (pathlib.Path(demo.__file__).parent / "tts.mp3").read_bytes()


class FakeVoice(TextToSpeechEntity):
    _attr_name = "Fake voice"
    _attr_unique_id = "fake_speaker_voice"
    _attr_supported_languages = ["en"]
    _attr_default_language = "en"

    def get_tts_audio(self, message, language, options):
        with open(SPOKEN, "a") as f:
            f.write(json.dumps({"t": time.time(), "tts": message}) + "\n")
        return ("mp3", MP3)


async def async_setup_entry(hass, entry, async_add_entities):
    async_add_entities([FakeVoice()])
