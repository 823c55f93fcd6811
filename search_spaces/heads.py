"""Head types a network may end with.

Only ``classification`` (optional 1x1 conv, global average pooling, linear)
exists today; a segmentation head will be a second entry here and a second
branch in the builder, with no change to the YAML schema's shape.
"""

from __future__ import annotations

HEAD_TYPES = ("classification",)
