"""The bundled demo model and the synthetic bilingual world it is trained and evaluated on.

Nothing here imports torch at import time: `world`, `tokenizer` and `acceptance` run on numpy
and Pillow; `model` and `train` need torch and are imported only when training or exporting.
"""
