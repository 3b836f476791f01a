import json
import time

from homeassistant.components import media_source
from homeassistant.components.media_player import (
    MediaPlayerEntity,
    MediaPlayerEntityFeature,
    MediaPlayerState,
    async_process_play_media_url,
)
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from . import SPOKEN


class FakeSpeaker(MediaPlayerEntity):
    """Plays like a network speaker: resolves the media source and downloads the audio."""

    _attr_name = "Treadmill speaker"
    _attr_unique_id = "fake_speaker_player"
    _attr_supported_features = (
        MediaPlayerEntityFeature.PLAY_MEDIA | MediaPlayerEntityFeature.BROWSE_MEDIA
    )
    _attr_state = MediaPlayerState.IDLE

    async def async_play_media(self, media_type, media_id, **kwargs):
        if media_source.is_media_source_id(media_id):
            item = await media_source.async_resolve_media(self.hass, media_id, self.entity_id)
            media_id = item.url
        url = async_process_play_media_url(self.hass, media_id)
        async with async_get_clientsession(self.hass).get(url) as r:
            body = await r.read()
        line = json.dumps(
            {"t": time.time(), "played": media_id, "status": r.status, "bytes": len(body)}
        )
        await self.hass.async_add_executor_job(_append, line)


def _append(line):
    with open(SPOKEN, "a") as f:
        f.write(line + "\n")


async def async_setup_entry(hass, entry, async_add_entities):
    async_add_entities([FakeSpeaker()])
