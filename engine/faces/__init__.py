"""Face stages of the official pipeline that do not involve a network.

Stage 2 (alignment crop) and stage 4 (colour matching, warp back, blending) given five facial
landmarks; see ``align.py`` and OFFICIAL_PIPELINE.md §6.1 and §6.3. Landmark detection and the
SPADE face generator (stage 3) live elsewhere.
"""
