"""The voice and avatar names the seed pages list.

The seeds show only part of each list ("+51 more", "+14 more"), so names outside these are
rejected with a hint to pass the raw id instead (voice_id / avatar_id), which is always accepted.
"""

from __future__ import annotations

AVATAR_IV_DEFAULT_VOICE_ID = "f80e430f06b34b70b275c9c746436e37"

AVATAR_IV_VOICES: dict[str, str] = {
    "Onyx": "26b2064088674c80b1e5fc5ab1a068ea",
    "Coral": "6d5ef2eb0cb94193b90dd3cb397ae898",
    "Nova": "71b0aa6499f6458e8b040818a017db1f",
    "Shimmer": "8273e0a033074b5bb98d7ce3ab727bd9",
    "Lukas in car": "8f0944e10aad4e989bce8f76807b6f36",
    "Lea in car": "8f389c2237194f80b50fe7632dcc17b8",
    "Lea inside": "9af7667dcc3145b790a5fb1ac226dfe3",
    "DARAN INSIDE 2 with mic": "5a3cff20eddd491ca1196ffd1a868fdb",
    "Daran outside sitting": "9ff7fd2dd9114c3bae005e62aa485e52",
    "Gail inside standing": "acebd7b6419a44a388b9d1620614b29f",
}

AVATAR_V_AVATARS: tuple[str, ...] = (
    "Abigail Sofa Front",
    "Amelia Business Training Front",
    "Anja Office Front",
    "Ann Doctor Sitting",
    "Annie Bar Sitting Front",
    "Artur Office Front",
    "Aubrey Night Scene Front",
    "Blanka Lounge Front",
    "Bojan Business Training Front",
    "Brandon Business Sitting Front",
)

AVATAR_V_VOICES: tuple[str, ...] = (
    "Aaron",
    "Allison",
    "AstroMesh",
    "Blanka - Lifelike",
    "Camden",
    "Chill Brian",
    "Daniel",
    "Elio",
    "Ida - Lifelike",
    "Jessica Anne Bogart",
)
