"""The audio tower as a model type of its own ("qwen2_audio_encoder"), as 4.45's AutoConfig/AutoModel know it."""
from .configuration_qwen2_audio import Qwen2AudioEncoderConfig
from .modeling_qwen2_audio import Qwen2AudioEncoder

CONFIG_CLASS = Qwen2AudioEncoderConfig
MODEL_CLASSES = {"base": Qwen2AudioEncoder}
