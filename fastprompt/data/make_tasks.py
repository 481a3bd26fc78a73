"""Writes the task files shipped in ``fastprompt/data/tasks/`` (run ``python -m fastprompt.data.make_tasks``).

``reviews``: short English reviews of films, phones, headphones, restaurants, books and hotels,
labelled negative (0) / positive (1). Each review is one to three hand-written sentences about
aspects of the item, sometimes with a concession of the other polarity ("My only complaint is
the price.") and a closing remark; the label is the overall opinion. 100 reviews per domain
(50 per class), split 2/3 train, 1/6 validation, 1/6 test per domain and class.

The output is deterministic (fixed seed); the files are committed, so this only needs to run
after the sentences below change.
"""
import json
import random
from pathlib import Path

SEED = 20240
PER_DOMAIN_AND_CLASS = 50
LABELS = ("negative", "positive")

# domain: {"pos": aspect sentences, "neg": aspect sentences, "pos_flaw": a small complaint inside a
# positive review, "neg_upside": a small good point inside a negative review, closers}
REVIEWS = {
    "film": {
        "pos": [
            "The acting is superb from start to finish.",
            "The story kept me guessing until the very last scene.",
            "It is funny, warm and surprisingly moving.",
            "The cinematography is gorgeous and every shot feels deliberate.",
            "The lead gives the performance of her career.",
            "The script is sharp and the jokes actually land.",
            "I was completely gripped for the whole two hours.",
            "The soundtrack fits every mood of the film perfectly.",
            "The ending is clever and completely earned.",
            "The characters feel like real people with real problems.",
            "The pacing is tight and there is not a wasted minute.",
            "The action scenes are thrilling and easy to follow.",
        ],
        "neg": [
            "The plot makes no sense and the twist is obvious from the start.",
            "The acting is wooden and the dialogue is painful.",
            "I checked my watch every ten minutes.",
            "The jokes fall flat and the pacing drags.",
            "The characters are so thin that I stopped caring about them.",
            "The ending is rushed and ruins everything before it.",
            "It is two hours of loud noise and shaky camera work.",
            "The story is a lazy copy of better films.",
            "Half the audience walked out before the end.",
            "The special effects look cheap and unfinished.",
            "The script is full of clichés and nothing surprises.",
            "The lead seems bored in every single scene.",
        ],
        "pos_flaw": ["The middle drags a little.", "Some of the side characters are underused.",
                     "It runs perhaps ten minutes too long."],
        "neg_upside": ["The music is the only good thing about it.", "The costumes are nice to look at.",
                       "One or two scenes are genuinely funny."],
        "pos_close": ["Go and see it.", "I would happily watch it again.", "One of the best films of the year.",
                      "Highly recommended."],
        "neg_close": ["Save your money.", "I want those two hours back.", "Skip this one.",
                      "A real disappointment."],
    },
    "phone": {
        "pos": [
            "The battery easily lasts two full days.",
            "The screen is bright and sharp even in direct sunlight.",
            "The camera takes wonderful photos in low light.",
            "It is fast and never stutters, even with many apps open.",
            "It feels solid and premium in the hand.",
            "Setting it up took five minutes and everything just worked.",
            "Charging is quick and the phone stays cool.",
            "The speakers are loud and clear for such a slim phone.",
            "The software is clean and updates arrive promptly.",
            "Call quality is excellent and the signal is strong.",
            "Face unlock works instantly, even in the dark.",
            "It is light enough to forget it is in my pocket.",
        ],
        "neg": [
            "The battery is dead by lunchtime.",
            "The screen cracked after a single small drop.",
            "It freezes several times a day and needs restarting.",
            "The camera photos are blurry and washed out.",
            "It gets uncomfortably hot while charging.",
            "The touch screen often ignores my taps.",
            "The speaker crackles at any volume above half.",
            "It is full of preinstalled apps that cannot be removed.",
            "Calls keep dropping even with full signal.",
            "The fingerprint reader fails more often than it works.",
            "It stopped charging after three weeks.",
            "The software is slow and the updates made it worse.",
        ],
        "pos_flaw": ["My only complaint is the price.", "It does not come with a charger.",
                     "The case it ships with is a bit flimsy."],
        "neg_upside": ["The colour is nice, at least.", "The box it came in was lovely.",
                       "The screen is decent."],
        "pos_close": ["Worth every penny.", "I would buy it again.", "The best phone I have owned.",
                      "Highly recommended."],
        "neg_close": ["I am returning it.", "Avoid this phone.", "A complete waste of money.",
                      "I regret buying it."],
    },
    "headphones": {
        "pos": [
            "The sound is rich, with deep bass and clear highs.",
            "The noise cancelling makes my commute peaceful.",
            "They are comfortable enough to wear all day.",
            "The battery lasts a whole week of commuting.",
            "Pairing with my laptop and phone is effortless.",
            "The microphone is clear on calls, even outside.",
            "They fold up small and the case is sturdy.",
            "The controls are simple and respond every time.",
            "They stay put even when I run.",
            "Music sounds the way the artist intended.",
        ],
        "neg": [
            "The sound is tinny and the bass is missing.",
            "They hurt my ears after twenty minutes.",
            "The left side stopped working after a month.",
            "The connection drops every few minutes.",
            "The noise cancelling barely does anything.",
            "People on calls say I sound like I am underwater.",
            "The battery lasts barely three hours.",
            "The touch controls trigger whenever I adjust them.",
            "They fall out of my ears at the slightest movement.",
            "The hinge snapped within two weeks.",
        ],
        "pos_flaw": ["The case is a little bulky.", "The app is rather basic.",
                     "They are pricier than I hoped."],
        "neg_upside": ["They do look stylish.", "The case is well made.", "The price was low."],
        "pos_close": ["Worth every penny.", "I use them every day.", "Highly recommended.",
                      "I am very happy with them."],
        "neg_close": ["I am sending them back.", "Do not buy these.", "A waste of money.",
                      "Very disappointing."],
    },
    "restaurant": {
        "pos": [
            "The food was delicious and beautifully presented.",
            "Our waiter was friendly and knew the menu well.",
            "The pasta tasted homemade and the sauce was perfect.",
            "Everything arrived hot and quickly.",
            "The desserts alone are worth the trip.",
            "The portions are generous and the prices fair.",
            "It has a cosy atmosphere and a lovely view.",
            "The staff made my mother's birthday feel special.",
            "The fish was fresh and cooked just right.",
            "They handled my allergy carefully and without fuss.",
        ],
        "neg": [
            "We waited an hour for cold food.",
            "The steak was tough and the chips were soggy.",
            "Our waiter was rude and forgot half our order.",
            "The bill was huge for such tiny portions.",
            "The soup was salty enough to be inedible.",
            "The table was sticky and the floor was dirty.",
            "My chicken was undercooked and I felt ill afterwards.",
            "The music was so loud we could not talk.",
            "They charged us for dishes we never received.",
            "The bread was stale and the salad was wilted.",
        ],
        "pos_flaw": ["It can get noisy on weekends.", "Parking nearby is difficult.",
                     "The wine list is short."],
        "neg_upside": ["The coffee was fine.", "The building is pretty.", "The menu looked promising."],
        "pos_close": ["We will definitely be back.", "Book a table, you will not regret it.",
                      "Our new favourite place.", "Highly recommended."],
        "neg_close": ["We will not be going back.", "Eat somewhere else.", "Avoid this place.",
                      "A truly awful evening."],
    },
    "book": {
        "pos": [
            "I could not put it down and finished it in two nights.",
            "The writing is beautiful and never wastes a word.",
            "The characters stayed with me long after the last page.",
            "The plot is clever and the twists feel fair.",
            "It made me laugh out loud on the train.",
            "The author explains difficult ideas with real clarity.",
            "Every chapter ends on a hook.",
            "The world it describes feels completely real.",
            "The ending is moving without being sentimental.",
            "It is the kind of book you want to press on your friends.",
        ],
        "neg": [
            "I gave up halfway through.",
            "The prose is clumsy and full of repetition.",
            "Nothing happens for the first two hundred pages.",
            "The characters are flat and their choices make no sense.",
            "The ending feels like the author simply ran out of ideas.",
            "It is padded with pointless detail.",
            "The dialogue reads like a bad soap opera.",
            "The mystery is solved by pure coincidence.",
            "It promises a lot in the blurb and delivers none of it.",
            "I found it a chore to finish.",
        ],
        "pos_flaw": ["The opening chapter is a little slow.", "A few of the minor characters blur together.",
                     "The print in my copy is rather small."],
        "neg_upside": ["The cover is lovely.", "The first chapter is promising.",
                       "A couple of passages are well written."],
        "pos_close": ["A wonderful read.", "I will read everything this author writes.", "Highly recommended.",
                      "One of my favourite books this year."],
        "neg_close": ["Not worth your time.", "I would not recommend it.", "Pick something else.",
                      "A real letdown."],
    },
    "hotel": {
        "pos": [
            "The room was spotless and the bed was very comfortable.",
            "The staff went out of their way to help us.",
            "The breakfast had a huge choice and everything was fresh.",
            "It is in a quiet street just minutes from the centre.",
            "Check-in was quick and our room was ready early.",
            "The view from our balcony was breathtaking.",
            "The pool was clean and never crowded.",
            "The shower was hot and powerful.",
            "They upgraded our room for our anniversary.",
            "Everything was exactly as described in the photos.",
        ],
        "neg": [
            "The room was dirty and smelled of smoke.",
            "The staff were unhelpful and rude at reception.",
            "We barely slept because of the noise from the street.",
            "The shower was cold every morning.",
            "The breakfast was tired and ran out early.",
            "The air conditioning did not work at all.",
            "Our room looked nothing like the photos.",
            "There were stains on the sheets.",
            "They lost our booking and gave us a smaller room.",
            "The wifi only worked in the lobby.",
        ],
        "pos_flaw": ["The wifi was a bit slow.", "Parking costs extra.", "The lift is rather small."],
        "neg_upside": ["The location is convenient.", "The lobby is attractive.", "The price was reasonable."],
        "pos_close": ["We would stay here again.", "Perfect for a weekend away.", "Highly recommended.",
                      "The best hotel of our trip."],
        "neg_close": ["Stay somewhere else.", "We will never stay here again.", "Avoid this hotel.",
                      "Not worth the money."],
    },
}


def compose(domain: dict, positive: bool, rng: random.Random) -> str:
    key = "pos" if positive else "neg"
    aspects = rng.sample(domain[key], rng.choice((1, 2, 2)))
    parts = list(aspects)
    if rng.random() < 0.3:  # a concession of the other polarity, never first
        parts.insert(rng.randint(1, len(parts)), rng.choice(domain["pos_flaw" if positive else "neg_upside"]))
    if rng.random() < 0.6:
        parts.append(rng.choice(domain[key + "_close"]))
    return " ".join(parts)


def build(seed: int = SEED):
    """{"train": [...], "validation": [...], "test": [...]} of review records."""
    rng = random.Random(seed)
    splits = {"train": [], "validation": [], "test": []}
    seen = set()
    for name, domain in REVIEWS.items():
        for label in (0, 1):
            texts = []
            while len(texts) < PER_DOMAIN_AND_CLASS:
                text = compose(domain, bool(label), rng)
                if text not in seen:
                    seen.add(text)
                    texts.append(text)
            n_val = n_test = PER_DOMAIN_AND_CLASS // 6
            n_train = PER_DOMAIN_AND_CLASS - n_val - n_test
            for split, chunk in (("train", texts[:n_train]), ("validation", texts[n_train:n_train + n_val]),
                                 ("test", texts[n_train + n_val:])):
                splits[split] += [{"text": t, "label": label, "label_text": LABELS[label], "domain": name}
                                  for t in chunk]
    for split in splits.values():
        rng.shuffle(split)
    return splits


def main(folder: Path = Path(__file__).parent / "tasks") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, records in build().items():
        path = folder / f"reviews_{split}.jsonl"
        with path.open("w") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{path}: {len(records)} examples")


if __name__ == "__main__":
    main()
