"""Stage 1: text-prompted lesion localization (BLIP-2-style Q-Former) into ranked box prompts."""
