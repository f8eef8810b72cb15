"""The shared base: small, dependency-free modules every package may import (secret
detection, value types). It imports nothing of ours."""
