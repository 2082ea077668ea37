"""Prompts and answer targets, exactly as the method's Table 3.

System: ``Respond in the following format:<reasoning> ... </reasoning><answer> ... </answer>``
User:   one image slot per image, then
        ``what is the most suitable value for <attribute> for this <vertical>. <description> Options: <values>``
Target: ``<reasoning> ... </reasoning><answer> ... </answer>``

Messages are plain chat-template dicts (the shape ``processor.apply_chat_template`` and TRL's vision collator take);
no model or processor is imported here.
"""

from __future__ import annotations

from attrpipe.taxonomy import CATEGORY_ATTRIBUTE, Attribute

__all__ = [
    "SYSTEM_PROMPT",
    "OPTIONS_SEPARATOR",
    "attribute_label",
    "user_text",
    "build_messages",
    "messages_for",
    "format_target",
]

SYSTEM_PROMPT = "Respond in the following format:<reasoning> ... </reasoning><answer> ... </answer>"
OPTIONS_SEPARATOR = ", "
# The category question asks about the product itself, so the prompt names no vertical.
CATEGORY_VERTICAL_LABEL = "product"


def attribute_label(attribute: Attribute) -> str:
    """How the prompt names an attribute: ``number_of_wheels`` -> ``number of wheels``."""
    return attribute.name.replace("_", " ")


def user_text(attribute: Attribute, vertical_display_name: str) -> str:
    vertical = CATEGORY_VERTICAL_LABEL if attribute.name == CATEGORY_ATTRIBUTE else vertical_display_name
    options = OPTIONS_SEPARATOR.join(attribute.values)
    description = attribute.description.strip()
    return (
        f"what is the most suitable value for {attribute_label(attribute)} for this {vertical}. "
        f"{description} Options: {options}"
    )


def build_messages(
    attribute: Attribute, vertical_display_name: str, num_images: int, *, system: bool = True
) -> list[dict]:
    """Chat messages for one (listing, attribute): system prompt, then the images first and the question after.

    Images come before the text so that every attribute of a listing shares the same prompt prefix (the images),
    which the vLLM engine's prefix cache exploits.
    """
    return messages_for(user_text(attribute, vertical_display_name), num_images, system=system)


def messages_for(text: str, num_images: int, *, system: bool = True) -> list[dict]:
    """Chat messages for a user text already built by :func:`user_text` (as stored in the pairs shards)."""
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    content: list[dict] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": text})
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]})
    messages.append({"role": "user", "content": content})
    return messages


def format_target(reasoning: str, answer: str) -> str:
    """The assistant target in the method's format."""
    return f"<reasoning> {reasoning.strip()} </reasoning><answer> {answer.strip()} </answer>"
