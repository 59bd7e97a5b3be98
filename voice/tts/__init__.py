"""Text-to-speech: Piper backend, sentence chunking and streamed synthesis."""

from voice.tts.base import Synthesizer, TtsError, TtsOptions, VoiceLoadError
from voice.tts.chunker import SentenceChunker
from voice.tts.piper import PiperSynthesizer
from voice.tts.stream import SpeechChunk, sentences_from_deltas, speak, synthesize_text
from voice.tts.textclean import SpeechTextCleaner

__all__ = [
    "PiperSynthesizer",
    "SentenceChunker",
    "SpeechChunk",
    "SpeechTextCleaner",
    "Synthesizer",
    "TtsError",
    "TtsOptions",
    "VoiceLoadError",
    "sentences_from_deltas",
    "speak",
    "synthesize_text",
]
