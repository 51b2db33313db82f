"""Face stages of the official pipeline.

Stage 2 (alignment crop) and stage 4 (colour matching, warp back, blending) given five facial
landmarks; see ``align.py`` and OFFICIAL_PIPELINE.md §6.1 and §6.3. Offline face detection with
five landmarks (our own MTCNN cascade over the released weights) is in ``detect.py``. The SPADE
face generator (stage 3) is ``engine.models.networks.face``; ``stage.py`` runs stages 2-4 on a
restored photo for the pipeline. ``regions.py`` defines the eye and mouth regions the mask policy
protects from detected "damage" (and the detection benchmark scores false alarms on).
"""
