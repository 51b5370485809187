"""Built-in sentences for the synthetic corpus: words that carry an emotion, and words that carry none.

:data:`EMOTION_SENTENCES` holds, per emotion, sentences whose *words* express it (``Neutral``:
composed, matter-of-fact, indifferent statements). :data:`NEUTRAL_SENTENCES` are lexically
neutral carrier sentences in the manner of RAVDESS's "Kids are talking by the door": they say
nothing about how the speaker feels. Sentences have 5 to 11 words and end with a full stop, so
punctuation is no cue; the voice adds its own intonation when it speaks them.

A clip's words relate to its label (the emotion of the *voice*) in one of three
:data:`LEXICAL_CONDITIONS`: ``congruent`` (the label's own sentences), ``neutral`` (carrier
sentences) or ``conflict`` (another emotion's sentences). Words are thus a strong but imperfect
cue: right on congruent clips, silent on neutral ones, misleading on conflicting ones.
"""

from __future__ import annotations

__all__ = ["EMOTION_SENTENCES", "NEUTRAL_SENTENCES", "LEXICAL_CONDITIONS", "lexical_emotion"]

LEXICAL_CONDITIONS = ("congruent", "neutral", "conflict")

EMOTION_SENTENCES: dict[str, tuple[str, ...]] = {
    "Neutral": (
        "It makes no real difference to me either way.",
        "I have no strong feelings about it.",
        "That seems fine, nothing special to report.",
        "I suppose that is one way to do it.",
        "Everything is normal, just an ordinary day.",
        "I am not bothered, we can do either.",
        "It was all right, nothing more to say.",
        "Fine, I will note it down for later.",
        "I feel the same as I usually do.",
        "It is a perfectly average result, as expected.",
        "Nothing much happened, it was a quiet week.",
        "Whatever you decide is acceptable to me.",
        "The outcome was about what I thought.",
        "I am calm about it, it is routine.",
        "Sure, that works, I have no objection.",
        "It is neither good nor bad, just okay.",
        "I can take it or leave it.",
        "The plan is reasonable, let us continue.",
        "There is nothing unusual about this at all.",
        "I simply noted the numbers and moved on.",
        "It is the usual procedure, nothing to worry about.",
        "My opinion has not changed since yesterday.",
        "All right, I understand what you mean.",
        "We will see how it goes, no rush.",
    ),
    "Happy": (
        "I am so happy you came to see me.",
        "This is the best news I have heard all year.",
        "We won the prize, I can hardly believe it.",
        "What a wonderful surprise, thank you so much.",
        "I love this place, it makes me smile.",
        "Today has been absolutely perfect from start to finish.",
        "I am thrilled that everything worked out so well.",
        "You did a fantastic job, I am delighted.",
        "We are going on holiday together, how exciting.",
        "I feel great, life is really good right now.",
        "This party is amazing, I am having so much fun.",
        "Congratulations, you truly deserve this wonderful success.",
        "I got the job, I am over the moon.",
        "Your gift made me incredibly happy today.",
        "What a lovely day to be with friends.",
        "I could dance all night, I feel fantastic.",
        "The baby laughed and my heart was full of joy.",
        "Everything is going brilliantly, I am so glad.",
        "I am grateful and cheerful, what a great week.",
        "That joke was hilarious, I love it.",
        "Finally, the results are in and we did wonderfully.",
        "I am excited to start this beautiful adventure.",
        "You made my day, this is pure delight.",
        "We celebrated all evening and it was glorious.",
    ),
    "Angry": (
        "I am furious that you lied to me again.",
        "Get out of my office right now.",
        "This is completely unacceptable and I am sick of it.",
        "How dare you speak to me like that.",
        "You broke it again, I am so angry.",
        "Stop wasting my time with these stupid excuses.",
        "I told you a hundred times, do not touch it.",
        "I hate the way you ignore everything I say.",
        "That is outrageous, I demand to see the manager.",
        "You ruined the whole project with your carelessness.",
        "I am fed up with this ridiculous nonsense.",
        "Do not ever take my things without asking.",
        "This is the last time I tolerate your rudeness.",
        "They cheated us and I am absolutely livid.",
        "Shut up and listen to me for once.",
        "I cannot stand your arrogance any longer.",
        "Who gave you the right to decide for me.",
        "You are a liar and I am done with you.",
        "Enough, I refuse to put up with this insult.",
        "Your behaviour is disgraceful and it makes me mad.",
        "Fix this mess immediately or you are fired.",
        "I am enraged by how unfair this decision is.",
        "Don't you dare slam that door again.",
        "This stupid machine has failed me for the last time.",
    ),
    "Sad": (
        "I miss her so much it hurts.",
        "Nobody came to my birthday this year.",
        "I feel so lonely since he left.",
        "Our old dog passed away last night.",
        "I lost my job and do not know what to do.",
        "Everything I tried has ended in failure.",
        "I cried all evening after the funeral.",
        "It is hopeless, nothing will ever get better.",
        "I am heartbroken that we have to say goodbye.",
        "The house feels so empty without the children.",
        "I wish I could see my father one more time.",
        "I feel miserable and tired of everything.",
        "They forgot about me, as they always do.",
        "We never got the chance to make things right.",
        "My best friend moved away and I am alone.",
        "I am sorry, I really tried my best.",
        "The letter said that she would not come back.",
        "I feel empty and I cannot stop the tears.",
        "All my hopes for this year have faded away.",
        "Sadly the little bird did not survive the winter.",
        "I am grieving and the days feel so long.",
        "He never called again and it still hurts.",
        "It breaks my heart to see you suffer.",
        "I am so disappointed, I really wanted this.",
    ),
}

NEUTRAL_SENTENCES: tuple[str, ...] = (
    "Kids are talking by the door.",
    "Dogs are sitting by the door.",
    "The train leaves the station at seven.",
    "There is a blue chair in the corner.",
    "The report is on the second shelf.",
    "She bought bread and milk at the shop.",
    "The meeting room is on the third floor.",
    "He parked the car behind the building.",
    "The window faces the garden and the street.",
    "We usually take the bus to work.",
    "The book has twelve chapters and an index.",
    "Turn left at the next corner.",
    "The keys are in the kitchen drawer.",
    "They painted the fence last summer.",
    "The river runs along the edge of town.",
    "My brother works at the post office.",
    "The lamp is next to the sofa.",
    "The shop opens at nine in the morning.",
    "A cup of tea is on the table.",
    "The bridge crosses the river near the mill.",
    "Please put the boxes in the hall.",
    "The clock on the wall shows four.",
    "She wrote the numbers on a card.",
    "The bus stops outside the library.",
)

_EMOTION_OF = {s: emotion for emotion, group in EMOTION_SENTENCES.items() for s in group}


def lexical_emotion(text: str) -> str | None:
    """The emotion a built-in sentence's words express (``Neutral`` for composed statements),
    or None for a lexically neutral carrier sentence or a sentence that is not built in."""
    return _EMOTION_OF.get(text)
