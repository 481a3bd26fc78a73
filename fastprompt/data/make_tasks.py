"""Writes the task files shipped in ``fastprompt/data/tasks/`` (run ``python -m fastprompt.data.make_tasks``).

``reviews``: short English reviews of films, phones, headphones, restaurants, books and hotels,
labelled negative (0) / positive (1). Each review is one to three hand-written sentences about
aspects of the item, sometimes with a concession of the other polarity ("My only complaint is
the price.") and a closing remark; the label is the overall opinion. 100 reviews per domain
(50 per class), split 2/3 train, 1/6 validation, 1/6 test per domain and class.

``topics``: short news texts labelled sport (0), science (1), business (2) or politics (3). Each
class has 20 story frames (a football result, a vaccine trial, a takeover, a resignation, ...),
each with headlines, lead sentences and follow-up sentences whose slots take invented but
plausible names (clubs, athletes, universities, companies, chief executives, parties,
ministers). A text is the lead alone, headline + lead, or headline + lead + follow-up. 120 texts
per class (6 per frame), split 4 / 1 / 1 per frame into train / validation / test (80 / 20 / 20
per class).

``entailment``: a premise (an everyday sentence: a purchase, a missed train, a cancelled fair,
a borrowed camera, ...) and a hypothesis, labelled entailment (0) when the premise implies the
hypothesis and not_entailment (1) otherwise (a contradiction or a statement the premise does not
support). 20 frames, each with one or two premise templates and hand-written hypotheses of
both kinds over shared slots (names with their pronouns, objects, places, days, numbers). 240
pairs per class (12 per frame and class), split 8 / 2 / 2 per frame and class (160 / 40 / 40
per class); ``text`` is the premise and the hypothesis joined by a space.

No text occurs twice within or across splits of a task; a sentence (or a frame filled with other
names) can occur in several splits. The output is deterministic (fixed seeds); the files are
committed, so this only needs to run after the sentences below change.
"""
import json
import random
import string
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


# ---- topics ----------------------------------------------------------------------------------------

TOPIC_LABELS = ("sport", "science", "business", "politics")
TOPIC_SEED = SEED + 1
PER_FRAME = 6  # texts per frame: 4 train, 1 validation, 1 test
TOPIC_SPLIT = (4, 1, 1)

# Slot pools; a template names a slot by its pool, and a digit suffix asks for another value of
# the same pool ({team} beat {team2}).
TOPIC_POOLS = {
    "city": ["Halden", "Marlow Bay", "Kestrel Point", "Ashby", "Port Elland", "Riverton", "Norbury", "Castlemere"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "month": ["March", "April", "May", "September", "October", "November"],
    "count": ["five", "six", "seven", "eight", "nine", "ten"],
    "pct": ["3", "4.5", "6", "8", "12", "15"],
    "small_pct": ["0.4", "1.2", "1.8", "2.5", "3.1"],
    # sport
    "team": ["Harbour City Rovers", "Eastfield Athletic", "Kingsbridge United", "Redmoor Town",
             "Southgate Wanderers", "Ashford Rangers", "Westvale City", "Northport Albion"],
    "player": ["Daniel Okafor", "Luca Marchetti", "Sam Whitfield", "Tomás Rivera", "Jonas Lindqvist",
               "Kwame Mensah", "Ryan Callaghan", "Mateo Duarte"],
    "athlete": ["Elena Novak", "Aisha Bello", "Hannah Kerr", "Mei Tanaka", "Sofia Lindgren", "Grace Adeyemi",
                "Julia Hartmann", "Priya Raman"],
    "coach": ["Paul Hendry", "Marco Bellini", "Steve Tranter", "Anders Holm", "Frank Doyle", "Gareth Mills"],
    "score": ["2-0", "2-1", "3-0", "3-1", "3-2", "4-1"],
    "rugby": ["Ireland", "Argentina", "Japan", "Fiji", "Italy", "Samoa", "Canada", "Georgia"],
    "county": ["Westmoor", "Ashdale", "Kingsmere", "Harlow Vale", "Brackenshire", "Eastholm"],
    "club": ["Falcons", "Storm", "Giants", "Comets", "Royals", "Wolves"],
    "nation": ["Norway", "Portugal", "Canada", "Kenya", "New Zealand", "Japan", "Ireland", "Argentina"],
    "age": ["21", "23", "24", "26", "28", "29"],
    "veteran": ["33", "34", "35", "36", "37"],
    # science
    "institute": ["the University of Castlemere", "Westbrook University", "the Riverton Institute of Technology",
                  "Norbury University", "the Halden Institute", "the Marlow Bay Research Centre",
                  "Ashby College", "the Lindale Institute of Science"],
    "scientist": ["Dr Amara Nwosu", "Professor Henrik Dahl", "Dr Lucía Ferrer", "Professor Wei Zhang",
                  "Dr Olivia Grant", "Professor Rahul Mehta", "Dr Ingrid Solberg", "Dr Kofi Asante"],
    "species": ["tree frog", "lily", "beetle", "freshwater crab", "gecko", "moth", "snail"],
    "habitat": ["the cloud forests of Ecuador", "a remote valley in Papua New Guinea",
                "the mountains of northern Borneo", "a cave system in Vietnam", "the rainforests of Madagascar",
                "the Atlantic Forest of Brazil"],
    "disease": ["malaria", "dengue", "tuberculosis", "cholera"],
    "efficacy": ["45", "58", "64", "72", "80"],
    "many": ["240", "480", "600", "1,200", "2,500", "4,000"],
    "mya": ["66", "95", "120", "150", "180", "230"],
    "distance": ["40", "120", "350", "700"],
    "mission": ["Aurora", "Pathfinder II", "Meridian", "Selene", "Odyssey-3", "Kestrel"],
    "years": ["ten", "fifteen", "twenty", "thirty", "forty"],
    # business
    "retailer": ["Redfern Retail Group", "Marlow & Finch", "Penny Lane Stores", "Holloway Home", "Brandt & Co"],
    "grocer": ["Greenbasket Supermarkets", "FreshWay", "Barlow Foodstores", "Cornerfield Foods"],
    "bank": ["Castlemere Bank", "Northern Mutual", "First Harbour Bank", "Ashby Savings", "Crestline Bank"],
    "tech": ["Lumen Payments", "Quarry Software", "Vantis Systems", "Orbis Cloud", "Datawell"],
    "carmaker": ["Corvel Motors", "Aldine Automotive", "Stratton Cars", "Vireo Motor Company"],
    "airline": ["Halcyon Airlines", "Skyward Air", "Blue Heron Airways", "Northstar Airlines"],
    "energy": ["Tidewater Energy", "Northfield Power", "Solent Gas", "Greystone Utilities"],
    "food": ["Bellamy Foods", "Orchard Valley Drinks", "Kinross Dairies", "Goldcrest Bakeries"],
    "startup": ["Pocketwise", "Fernleaf Health", "Tallyhouse", "Skylark Robotics", "Moss & Pine"],
    "telecom": ["Brightline Telecom", "Orbis Broadband", "Kestrel Mobile", "Westnet"],
    "boss": ["Margaret Lyle", "David Achebe", "Karin Vogel", "Simon Pryce", "Naomi Foster", "Rohan Desai",
             "Elaine Mercer"],
    "money": ["£40m", "£85m", "£120m", "£350m", "£1.2bn", "£2.4bn"],
    "funding": ["£12m", "£25m", "£40m", "£60m"],
    "jobs": ["150", "300", "450", "800", "1,200"],
    "fleet": ["12,000", "40,000", "85,000", "130,000"],
    "rate": ["3.5", "4", "4.25", "4.75", "5"],
    "quarter": ["first", "second", "third", "fourth"],
    "ordinal": ["third", "fourth", "fifth", "sixth"],
    # politics
    "minister": ["Clara Osei", "Martin Reyes", "Helen Thorne", "Viktor Sand", "Amina Yusuf", "Robert Kelly",
                 "Sunita Rao", "Jan de Vries"],
    "mp": ["Laura Benson", "Tariq Hussain", "Gareth Lloyd", "Chloe Martin", "Pieter Janssen", "Maya Kowalski"],
    "party": ["the Liberal Alliance", "the People's Party", "the Green Union", "the Social Democratic Party",
              "the National Reform Party", "the Centre Party"],
    "ministry": ["Health", "Education", "Transport", "Defence", "Interior", "Environment"],
    "region": ["Castlemere", "Port Elland", "Lindale", "the northern province", "Riverton", "the eastern region"],
    "seats": ["42", "57", "63", "78", "91"],
    "voters": ["1,000", "1,500", "2,000", "2,400"],
    "poll": ["31", "33", "35", "37"],
    "bill": ["a ban on smoking in public parks", "a law to raise the minimum wage", "new rules on political donations",
             "stricter limits on rent increases", "a plan to build twenty new prisons"],
}

# class: frames, each {"head": headlines, "lead": lead sentences, "more": follow-up sentences}
TOPICS = {
    "sport": [
        {"head": ["{team} beat {team2} {score} to go top of the league.",
                  "{team} win {score} at {team2} to stay in the title race."],
         "lead": ["{player} scored twice in the second half as {team} extended their unbeaten run to {count} games.",
                  "Two goals from {player} either side of half-time settled the match in front of a crowd of "
                  "more than 30,000."],
         "more": ["Their manager, {coach}, said the squad still had plenty to improve.",
                  "{team2} finished the game with ten men after a late red card."]},
        {"head": ["{team} win the National Cup on penalties.", "Penalty shoot-out drama hands {team} the cup."],
         "lead": ["Goalkeeper {player} saved two spot kicks after the final against {team2} finished 1-1 after "
                  "extra time.",
                  "{team} held their nerve in the shoot-out after a tense 1-1 draw with {team2} at the national "
                  "stadium."],
         "more": ["It is the club's first major trophy in {count} years.",
                  "Thousands of fans celebrated in the streets of {city} late into the night."]},
        {"head": ["{team} sign striker {player} on a four-year deal.", "{player} completes his move to {team}."],
         "lead": ["The {age}-year-old joins from {team2} for an undisclosed fee and could make his debut on {weekday}.",
                  "{team} beat several rival clubs to the signature of the {age}-year-old forward, who scored 19 "
                  "goals for {team2} last season."],
         "more": ["He passed a medical on {weekday2} morning.",
                  "\"This is a club with big ambitions,\" {player} said after signing."]},
        {"head": ["{team} sack manager {coach} after a poor run.",
                  "{coach} leaves {team} with the club near the bottom of the table."],
         "lead": ["The club parted company with {coach} after {count} matches without a win, and his assistant will "
                  "take charge for {weekday}'s game against {team2}.",
                  "{team} have won only once since August and sit one place above the relegation zone."],
         "more": ["The board said a new appointment would be made within a fortnight.",
                  "Supporters had called for a change after the {score} home defeat by {team3}."]},
        {"head": ["{athlete} wins the {city} Marathon in a course record.",
                  "Course record for {athlete} in the {city} Marathon."],
         "lead": ["{athlete} of {nation} crossed the line in two hours and 19 minutes, more than a minute ahead of "
                  "her nearest rival.",
                  "Running alone for the last ten kilometres, {athlete} finished well clear of the field in cool, "
                  "dry conditions."],
         "more": ["She said she would now focus on the world championships in the summer.",
                  "More than 20,000 runners took part, many of them raising money for charity."]},
        {"head": ["{athlete} reaches the final of the {city} Open.",
                  "{athlete} battles past {athlete2} into the {city} Open final."],
         "lead": ["{athlete} beat {athlete2} 6-4, 3-6, 6-2 to reach her first final of the season.",
                  "The third seed came from a set down against {athlete2} to win in almost three hours on centre "
                  "court."],
         "more": ["She will face the winner of the second semi-final on {weekday}.",
                  "Her serve, which let her down earlier in the week, was close to its best."]},
        {"head": ["{player} ruled out for six weeks with a hamstring injury.",
                  "Injury blow for {team} as {player} faces a long lay-off."],
         "lead": ["The {team} striker limped off during {weekday}'s win over {team2}, and a scan confirmed the damage.",
                  "{player} will miss at least {count} matches after tearing a thigh muscle in training."],
         "more": ["Manager {coach} said the club would not rush him back.",
                  "It is a serious setback for a side already without two first-choice defenders."]},
        {"head": ["{athlete} takes the leader's jersey after a brutal mountain stage.",
                  "{athlete} attacks on the final climb to win stage {count}."],
         "lead": ["{athlete} attacked on the last climb of the day and finished 42 seconds clear of her closest "
                  "rival.",
                  "{athlete} rode away from the group with five kilometres to go and held on through the rain to "
                  "the summit finish."],
         "more": ["The race finishes in {city} on {weekday}.",
                  "Her team-mate {athlete2} also moved into the top five overall."]},
        {"head": ["{athlete} breaks the national record in the 200 metres freestyle.",
                  "National record for {athlete} at the swimming championships."],
         "lead": ["The {age}-year-old touched the wall in one minute 55 seconds at the national championships in "
                  "{city}.",
                  "{athlete} took almost half a second off her own record to qualify for the world championships."],
         "more": ["Her coach said she had been training at altitude for six weeks.",
                  "She will also swim the 400 metres later in the week."]},
        {"head": ["{rugby} hold on to beat {rugby2} in a tense rugby international.",
                  "Late try gives {rugby} victory over {rugby2}."],
         "lead": ["A try from winger {player} two minutes from time sealed a 24-20 win in front of a sold-out crowd.",
                  "{rugby} trailed by nine points at half-time before their forwards took control of the game."],
         "more": ["The result keeps {rugby} unbeaten in this year's championship.",
                  "{rugby2} will feel they should have won after missing three kicks at goal."]},
        {"head": ["{player} hits a century as {county} take control against {county2}.",
                  "Unbeaten hundred from {player} puts {county} on top."],
         "lead": ["{player} reached three figures shortly before tea and finished the day unbeaten on 131.",
                  "{county} closed the second day on 340 for five, a lead of 112 over {county2}."],
         "more": ["Rain is forecast for the third day.", "The bowlers struggled on a flat pitch in hot weather."]},
        {"head": ["The {city} {club} snap a five-game losing streak.",
                  "{player} scores 31 points as the {city} {club} end their losing run."],
         "lead": ["{player} scored 31 points and the {city} {club} pulled away in the fourth quarter to win 104-95.",
                  "The {city} {club} made 15 three-pointers in a 104-95 win over the {city2} {club2}."],
         "more": ["Their next game is at home on {weekday}.",
                  "Coach {coach} praised the team's defence in the final minutes."]},
        {"head": ["{athlete} named in the Olympic team.", "Sprinter {athlete} picked for the Olympics."],
         "lead": ["The {age}-year-old sprinter will run in the 100 and 200 metres and is expected to anchor the "
                  "relay team.",
                  "Selectors named {athlete} among 46 athletes for the games after her win at the national trials "
                  "in {city}."],
         "more": ["She missed the last games with a foot injury.",
                  "The team will hold a training camp in {city2} in July."]},
        {"head": ["{player} wins the {city} Grand Prix from sixth on the grid.",
                  "Victory for {player} in a chaotic {city} Grand Prix."],
         "lead": ["{player} took the lead when the safety car came out on lap 40 and held off {player2} to the flag.",
                  "A well-timed pit stop gave {player} the lead, and he finished four seconds ahead of {player2}."],
         "more": ["It is his first win of the season.",
                  "Both cars of the championship leader's team retired with engine trouble."]},
        {"head": ["{athlete} holds a two-shot lead after the second round.",
                  "{athlete} leads the {city} Classic at halfway."],
         "lead": ["A bogey-free round of 66 on {weekday} moved {athlete} to nine under par, two shots ahead of "
                  "{athlete2}.",
                  "{athlete} holed a long putt for birdie on the 18th to take the lead into the weekend."],
         "more": ["Strong winds are forecast for the third round.",
                  "Defending champion {athlete3} missed the cut by a single shot."]},
        {"head": ["{team} fined after fans throw flares onto the pitch.", "League punishes {team} for crowd trouble."],
         "lead": ["The league fined the club and ordered part of its stadium closed for the next home game against "
                  "{team2}.",
                  "Play was stopped for ten minutes during {team}'s match with {team2} while stewards cleared smoke "
                  "from the pitch."],
         "more": ["The club said it would ban the supporters responsible.", "{team} have 14 days to appeal."]},
        {"head": ["{player} announces his retirement at {veteran}.",
                  "{team} captain {player} to retire at the end of the season."],
         "lead": ["The defender made more than 400 appearances for {team} in a career spanning almost two decades.",
                  "{player} said his body could no longer cope with the demands of playing every week."],
         "more": ["He hopes to stay at the club as a youth coach.",
                  "He will play his final match against {team2} on {weekday}."]},
        {"head": ["{player} keeps his world title with a points win.",
                  "{player} outpoints {player2} to retain his belt."],
         "lead": ["The judges scored the twelve-round fight 116-112, 115-113 and 117-111 in favour of {player}.",
                  "{player} knocked {player2} down in the ninth round and controlled the fight from there."],
         "more": ["{player2} said he would ask for a rematch.",
                  "The fight in {city} was watched by a crowd of 18,000."]},
        {"head": ["{team} Women reach the cup semi-finals.", "{team} Women through to the last four."],
         "lead": ["Goals from {athlete} and {athlete2} gave {team} a 2-0 win over {team2} on {weekday}.",
                  "{athlete} scored the winner deep into stoppage time to knock out {team2}."],
         "more": ["A record crowd of 9,000 watched the match.",
                  "The semi-final draw will take place on {weekday2}."]},
        {"head": ["{team} and {team2} share the points in a goalless derby.",
                  "Derby ends 0-0 as {team} and {team2} cancel each other out."],
         "lead": ["Neither side managed a shot on target in the first half, and {team2} goalkeeper {player} made two "
                  "fine saves late on.",
                  "{team} hit the post twice but could not find a way past a well-organised {team2} defence."],
         "more": ["The draw leaves both clubs in mid-table.", "Manager {coach} said a point was a fair result."]},
    ],
    "science": [
        {"head": ["New species of {species} discovered in {habitat}.",
                  "Scientists describe a {species} never seen before."],
         "lead": ["Researchers from {institute} found the {species} during a three-week survey of {habitat}.",
                  "The {species} was identified from its DNA, which differs clearly from that of its closest "
                  "relatives."],
         "more": ["The team warns that its habitat is threatened by logging.",
                  "Museum specimens collected decades ago turned out to belong to the same species."]},
        {"head": ["Telescope finds water vapour on a distant planet.",
                  "Astronomers detect signs of water in the atmosphere of an exoplanet."],
         "lead": ["The planet, about {distance} light years away, orbits a small red star and is roughly twice the "
                  "size of Earth.",
                  "A team led by {scientist} of {institute} split the planet's faint light into its colours to "
                  "identify the molecules in its atmosphere."],
         "more": ["It is probably too hot to host life as we know it.",
                  "Follow-up observations are planned for next year."]},
        {"head": ["Experimental {disease} vaccine cuts infections by {efficacy} per cent in a trial.",
                  "Trial results raise hopes for a new {disease} vaccine."],
         "lead": ["The trial, run by {institute}, followed {many} children for two years.",
                  "Volunteers who received three doses of the vaccine were far less likely to fall ill than those "
                  "given a placebo, {scientist} reported."],
         "more": ["Side effects were mild and short-lived.",
                  "Larger trials are needed before the vaccine can be approved."]},
        {"head": ["Quarry workers uncover a {mya}-million-year-old dinosaur skeleton.",
                  "Nearly complete dinosaur skeleton found near {city}."],
         "lead": ["Palaeontologists from {institute} say the plant-eating animal was about nine metres long.",
                  "The skeleton, which still has most of its skull, may belong to a species unknown to science."],
         "more": ["It will go on display after several years of cleaning and study.",
                  "Marks on the bones suggest it was attacked by a large predator."]},
        {"head": ["New battery material could double the range of electric cars.",
                  "Researchers build a battery that charges in ten minutes."],
         "lead": ["Chemists at {institute} replaced the graphite in the battery's anode with a cheap form of silicon.",
                  "In laboratory tests the cells kept {pct} per cent more charge after a thousand cycles than "
                  "standard lithium-ion cells."],
         "more": ["The team has filed a patent.", "Scaling the process up to factory production remains a challenge."]},
        {"head": ["Greenland's glaciers are melting faster than expected.",
                  "Satellite data show record ice loss in Greenland."],
         "lead": ["Measurements from two satellites show the ice sheet lost about {pct} per cent more ice over the "
                  "past decade than models predicted.",
                  "Researchers at {institute} combined {years} years of satellite images with measurements taken on "
                  "the ice."],
         "more": ["The meltwater adds to rising sea levels around the world.",
                  "The findings were published in a peer-reviewed journal on {weekday}."]},
        {"head": ["Gene variant linked to a higher risk of heart disease.",
                  "Large DNA study finds a new risk gene for heart disease."],
         "lead": ["A team at {institute} compared the genomes of more than {many} patients with those of healthy "
                  "volunteers.",
                  "People carrying two copies of the variant were {pct} per cent more likely to have a heart attack "
                  "before the age of 60."],
         "more": ["The researchers hope the finding will lead to earlier screening.",
                  "{scientist}, who led the study, said lifestyle still matters far more than genes."]},
        {"head": ["{mission} probe lands on an asteroid.",
                  "Space probe {mission} collects rock samples from an asteroid."],
         "lead": ["After a seven-year journey, the {mission} spacecraft touched down for six seconds and captured dust "
                  "from the surface.",
                  "Engineers cheered as signals from the {mission} probe confirmed it had fired its sample-collecting "
                  "arm."],
         "more": ["The samples are due back on Earth in {years} months.",
                  "Scientists hope the rock will reveal how the early solar system formed."]},
        {"head": ["Teenagers who sleep longer do better at school, study finds.",
                  "Study links short sleep with poorer memory in teenagers."],
         "lead": ["Researchers at {institute} tracked the sleep of {many} pupils with wrist monitors for a whole "
                  "school year.",
                  "Pupils who slept less than seven hours a night scored {pct} per cent lower on memory tests."],
         "more": ["The authors suggest starting the school day later.",
                  "Screen use late at night was the strongest predictor of short sleep."]},
        {"head": ["Coral reefs show signs of recovery after bleaching.",
                  "Divers record new coral growth on a damaged reef."],
         "lead": ["Surveys by {institute} found that coral cover had grown by {pct} per cent in three years.",
                  "Marine biologists counted young corals at {count} sites that were badly bleached during a "
                  "heatwave five years ago."],
         "more": ["Scientists warn that another marine heatwave could undo the progress.",
                  "Fish numbers on the reef have also started to rise."]},
        {"head": ["Physicists build a quantum chip with fewer errors.",
                  "Quantum computer keeps its information stable for longer."],
         "lead": ["The team at {institute} kept its qubits stable for almost a millisecond, about {count} times "
                  "longer than its previous design.",
                  "By cooling the chip close to absolute zero and shielding it from stray signals, the researchers "
                  "cut the error rate sharply."],
         "more": ["A useful quantum computer is still many years away, the team cautions.",
                  "The results were checked by an independent group in {city}."]},
        {"head": ["Archaeologists uncover a Bronze Age settlement.",
                  "Ancient village found beneath a planned housing site."],
         "lead": ["Excavations near {city} revealed the remains of {count} roundhouses, pottery and a bronze axe.",
                  "Radiocarbon dating by {institute} suggests the village was occupied about 3,500 years ago."],
         "more": ["The finds will be studied before building work begins.",
                  "A wooden walkway across the nearby marsh was also preserved in the wet soil."]},
        {"head": ["Tiny trackers reveal the record journey of a songbird.",
                  "Migrating birds fly non-stop for days, tracking shows."],
         "lead": ["Scientists at {institute} fitted trackers weighing less than a gram to {many} warblers.",
                  "The birds crossed the desert and the sea in a single flight of about 3,000 kilometres, the data "
                  "show."],
         "more": ["Some of the birds flew at heights of more than 4,000 metres.",
                  "The study could help protect stopover sites along the route."]},
        {"head": ["Study in mice shows how the brain stores memories during sleep.",
                  "Brain cells replay the day's events during sleep, mouse study finds."],
         "lead": ["Neuroscientists at {institute} recorded the activity of hundreds of neurons as the mice explored a "
                  "maze and then slept.",
                  "When the researchers disrupted this replay, the mice forgot the route through the maze."],
         "more": ["The work may help explain memory problems in older people.",
                  "{scientist} said similar patterns had been seen in human patients."]},
        {"head": ["Seismologists test an earthquake early-warning system.",
                  "Early-warning system gave seconds of notice before an earthquake."],
         "lead": ["The system, developed at {institute}, detects the first, weaker waves of a quake and sends an "
                  "alert before the strong shaking arrives.",
                  "Sensors spread across the region picked up the magnitude 5.8 quake and issued warnings up to "
                  "{count} seconds before the shaking began."],
         "more": ["Trains in the area slowed down automatically.",
                  "The researchers want to link the alerts to mobile phones."]},
        {"head": ["Bacteria in garden soil yield a new antibiotic.",
                  "New antibiotic kills drug-resistant bacteria in laboratory tests."],
         "lead": ["Microbiologists at {institute} screened thousands of soil samples before finding a molecule that "
                  "kills resistant bacteria.",
                  "In tests on mice the compound cleared infections that no longer respond to existing drugs."],
         "more": ["Trials in people are at least {count} years away.",
                  "The bacteria did not become resistant to it during the experiments, the team says."]},
        {"head": ["Robot hand learns to handle fragile objects.",
                  "Engineers teach a robot to pick up eggs without breaking them."],
         "lead": ["Engineers at {institute} gave the robot hand soft fingertips packed with pressure sensors.",
                  "After practising thousands of times in a computer simulation, the robot picked up eggs and grapes "
                  "without damaging them."],
         "more": ["The design could be used in warehouses and on farms.",
                  "The team will present the work at a robotics conference in {city}."]},
        {"head": ["Physicists measure the mass of a particle with record precision.",
                  "New measurement puts a key physics theory to the test."],
         "lead": ["Using data from ten years of collisions, the team at {institute} pinned down the mass of the "
                  "W boson more precisely than ever.",
                  "The result agrees with the standard model of particle physics, easing fears of an error in "
                  "earlier measurements."],
         "more": ["Other experiments are expected to report their own results next year.",
                  "The analysis took more than {count} years to complete."]},
        {"head": ["Microplastics found in deep-sea mud.",
                  "Ocean floor holds far more plastic than thought, study says."],
         "lead": ["Researchers from {institute} counted plastic fibres in mud samples taken from depths of more than "
                  "3,000 metres.",
                  "The team estimates that {pct} per cent of the plastic that reaches the sea ends up on the sea "
                  "floor."],
         "more": ["Much of it comes from synthetic clothing, the study suggests.",
                  "Scientists are now studying the effect on animals that live in the sediment."]},
        {"head": ["Newly discovered comet may be visible to the naked eye.",
                  "Astronomers spot a comet heading towards the inner solar system."],
         "lead": ["The comet was first spotted by an amateur astronomer in {city} and confirmed by astronomers at "
                  "{institute}.",
                  "It should be brightest in {month}, when it passes closest to the Sun."],
         "more": ["Comets are notoriously unpredictable, so it may fade before then.",
                  "Observers will need a dark sky away from city lights."]},
    ],
    "business": [
        {"head": ["{retailer} profits jump as shoppers return to stores.", "Strong sales lift profits at {retailer}."],
         "lead": ["Pre-tax profit rose {pct}% to {money} in the year to March, helped by strong demand for clothing "
                  "and homeware.",
                  "{retailer} said like-for-like sales grew in every region, and it raised its dividend for "
                  "shareholders."],
         "more": ["Shares rose 5% in early trading.",
                  "Chief executive {boss} warned that rising wage costs would squeeze margins next year."]},
        {"head": ["{tech} agrees to buy {tech2} for {money}.", "{tech} and {tech2} agree a takeover deal."],
         "lead": ["The deal, which values {tech2} at a 30% premium to its share price, still needs approval from "
                  "competition regulators.",
                  "{tech} said buying its smaller rival would cut costs and let it offer customers more services."],
         "more": ["Shareholders of {tech2} will vote on the offer next month.",
                  "Analysts said the price looked generous."]},
        {"head": ["{carmaker} to close its {city} plant with the loss of {jobs} jobs.",
                  "Jobs at risk as {carmaker} shuts a factory."],
         "lead": ["The carmaker blamed falling demand for diesel models and high energy costs.",
                  "Production at the {city} site will move to a larger factory abroad by the end of next year."],
         "more": ["Unions said they would fight the decision.",
                  "Local business leaders called the closure a heavy blow to the town."]},
        {"head": ["{food} to open a new factory creating {jobs} jobs.",
                  "{food} invests {money} in a new production site."],
         "lead": ["The factory near {city} will start production in the spring and double the company's output.",
                  "{food} said demand for its products had grown strongly in supermarkets at home and abroad."],
         "more": ["Recruitment will begin in the autumn.", "The site will run partly on solar power."]},
        {"head": ["Central bank raises interest rates to {rate}%.",
                  "Interest rates rise for the third time this year."],
         "lead": ["The bank said inflation was still too high and that borrowing costs might have to rise further.",
                  "The decision will push up mortgage payments for millions of households."],
         "more": ["Economists had expected the move.",
                  "The pound rose slightly against the dollar after the announcement."]},
        {"head": ["Inflation falls to {rate}% as fuel prices ease.", "Prices rising more slowly as inflation eases."],
         "lead": ["Lower petrol prices and cheaper air fares helped bring the annual rate down, official figures show.",
                  "Food prices, however, were still {pct}% higher than a year ago."],
         "more": ["Analysts said the figures make a cut in interest rates more likely later this year.",
                  "Wages are now rising faster than prices for the first time in two years."]},
        {"head": ["{airline} cancels hundreds of flights as pilots strike.",
                  "Strike by pilots grounds {airline} flights."],
         "lead": ["The airline said about {pct}% of its flights would be cancelled on {weekday}, affecting tens of "
                  "thousands of passengers.",
                  "Pilots at {airline} are asking for higher pay after two years in which their wages fell behind "
                  "inflation."],
         "more": ["Passengers will be offered refunds or new bookings.",
                  "Shares in {airline} fell 4% in early trading."]},
        {"head": ["{retailer} reports its best Christmas in a decade.",
                  "Festive trading beats expectations at {retailer}."],
         "lead": ["Sales in the six weeks to early January were {pct}% higher than a year earlier, with online orders "
                  "leading the way.",
                  "Toys, electronics and party food sold well, {retailer} said."],
         "more": ["Other retailers have reported a weaker season.",
                  "The company will publish full-year results in April."]},
        {"head": ["{tech} shares soar on their stock market debut.", "Strong first day of trading for {tech} shares."],
         "lead": ["Shares in the company rose {pct}% on their first day of trading, valuing it at about {money}.",
                  "The listing is the largest by a technology company on the exchange this year."],
         "more": ["Founder {boss} still owns around a fifth of the business.",
                  "The company has yet to make a profit."]},
        {"head": ["{bank} chief executive {boss} steps down.", "{boss} to leave {bank} after {count} years in charge."],
         "lead": ["{boss} will stay until a successor is found, the bank said in a statement to the stock exchange.",
                  "Under {boss}, {bank} cut costs and returned to profit after heavy losses."],
         "more": ["Shares in {bank} were little changed.", "The board has begun searching for a replacement."]},
        {"head": ["{carmaker} recalls {fleet} cars over a brake fault.",
                  "Brake problem forces a recall at {carmaker}."],
         "lead": ["The company said a faulty part could make the brakes less effective in cold weather.",
                  "Owners will be contacted and the repair will be carried out free of charge at dealers."],
         "more": ["No accidents linked to the fault have been reported.",
                  "The recall is expected to cost the company about {money}."]},
        {"head": ["{energy} raises household energy prices by {pct}%.",
                  "Energy bills to rise as {energy} puts up prices."],
         "lead": ["The supplier blamed higher wholesale gas prices, and the increase will take effect from next month.",
                  "{energy} said a typical household would pay about £150 more a year."],
         "more": ["Consumer groups urged customers to check whether they could switch to a cheaper tariff.",
                  "The company reported record profits last year."]},
        {"head": ["Start-up {startup} raises {funding} from investors.",
                  "{startup} secures new funding to expand abroad."],
         "lead": ["{startup} will use the money to hire more engineers and open offices in three new countries.",
                  "The funding round values the young company at more than twice what it was worth a year ago."],
         "more": ["The company was founded in {city} five years ago.",
                  "Existing investors also took part in the round."]},
        {"head": ["House prices fall for the {ordinal} month in a row.",
                  "Higher mortgage costs weigh on the housing market."],
         "lead": ["The average price of a home fell {small_pct}% compared with a year earlier, according to {bank}.",
                  "Buyers are being put off by higher mortgage rates, and the number of sales has dropped."],
         "more": ["Prices in {city} held up better than in most areas.",
                  "Estate agents expect the market to stabilise later in the year."]},
        {"head": ["Shares slide as investors worry about slowing growth.", "Stock market has its worst day in months."],
         "lead": ["The main share index closed down {small_pct}%, with banks and mining companies among the biggest "
                  "losers.",
                  "Shares in {bank} and {bank2} fell sharply after weak figures on factory orders."],
         "more": ["Government bond prices rose as investors looked for safer assets.", "The price of oil also fell."]},
        {"head": ["{telecom} launches a cheaper broadband package.",
                  "{telecom} cuts prices in a bid to win back customers."],
         "lead": ["The package costs £20 a month and is aimed at households and small firms.",
                  "{telecom} hopes the lower price will win back customers lost to rivals in the past year."],
         "more": ["Analysts expect competitors to respond with their own offers.",
                  "The company has lost market share for {count} quarters running."]},
        {"head": ["Supermarkets cut prices as competition heats up.",
                  "{grocer} cuts the price of hundreds of everyday items."],
         "lead": ["{grocer} said it was lowering prices on more than 500 products, including milk, bread and nappies.",
                  "The move follows a fall in market share at {grocer}, according to industry data."],
         "more": ["Rivals are expected to follow.", "Suppliers fear they will be asked to share the cost."]},
        {"head": ["{bank} fined {funding} for failing to stop money laundering.",
                  "Regulator fines {bank} over weak checks on customers."],
         "lead": ["The financial regulator said {bank} had not checked where large deposits came from for almost "
                  "three years.",
                  "{bank} said it accepted the findings and had already spent heavily on new controls."],
         "more": ["The fine was reduced because the bank cooperated with the investigation.",
                  "It is the largest penalty the regulator has handed out this year."]},
        {"head": ["Exports rise to a record as demand from abroad recovers.",
                  "Record exports help narrow the trade deficit."],
         "lead": ["Sales of machinery, medicines and whisky overseas rose {small_pct}% in the {quarter} quarter, "
                  "official figures show.",
                  "Manufacturers in {city} said orders from Asia and North America had picked up strongly."],
         "more": ["A weaker currency has made goods cheaper for foreign buyers.",
                  "Imports fell slightly over the same period."]},
        {"head": ["Shipping delays leave shops short of stock.", "Port congestion disrupts deliveries to retailers."],
         "lead": ["Container ships are waiting up to a week to unload at the port of {city}, pushing up freight costs.",
                  "{retailer} warned that some furniture and electronics could be out of stock for weeks."],
         "more": ["Freight rates have almost doubled since the spring.",
                  "Logistics firms are hiring extra drivers to clear the backlog."]},
    ],
    "politics": [
        {"head": ["{party} wins the general election.", "Voters hand {party} a clear majority."],
         "lead": ["With almost all votes counted, {party} has {seats} more seats than at the last election, enough to "
                  "govern alone.",
                  "Party leader {minister} told cheering supporters in {city} that the result was a vote for change."],
         "more": ["Turnout was the highest in twenty years.", "{party2} conceded defeat shortly after midnight."]},
        {"head": ["{ministry} Minister {minister} resigns.",
                  "Pressure forces {ministry} Minister {minister} out of government."],
         "lead": ["{minister} stepped down after newspapers revealed that a close friend had won a government contract "
                  "without a tender.",
                  "In a letter to the prime minister, {minister} said the row had become a distraction from the work "
                  "of government."],
         "more": ["The opposition has called for a full inquiry.",
                  "A replacement is expected to be named on {weekday}."]},
        {"head": ["Parliament votes for {bill}.", "MPs back {bill} after a long debate."],
         "lead": ["The measure passed by 312 votes to 280 after the government agreed to last-minute changes.",
                  "Members of {party} voted against it, saying the proposal had been rushed through."],
         "more": ["It now goes to the upper house.", "The law could take effect as early as next year."]},
        {"head": ["Finance Minister {minister} announces income tax cuts in the budget.",
                  "Budget promises more money for hospitals and schools."],
         "lead": ["Presenting the budget to parliament, {minister} said spending on hospitals would rise by "
                  "{small_pct}% next year.",
                  "The opposition leader, {mp}, called the plans a pre-election giveaway that the country could not "
                  "afford."],
         "more": ["MPs will vote on the budget next week.",
                  "The plans must still be approved by the coalition partners."]},
        {"head": ["Poll puts {party} ahead for the first time in two years.",
                  "Support for the government slips in a new poll."],
         "lead": ["The survey of {voters} voters gives {party} {poll}% of the vote, {count} points ahead of {party2}.",
                  "Voters named the cost of living and waiting times in hospitals as their biggest concerns."],
         "more": ["The next general election is due within eighteen months.",
                  "Prime Minister {mp}'s personal ratings have also fallen."]},
        {"head": ["Coalition talks between {party} and {party2} break down.",
                  "Talks on forming a new government stall."],
         "lead": ["Negotiators failed to agree on spending plans and the future of the energy tax.",
                  "Weeks after an inconclusive election, {party} leader {mp} said the two sides were still far apart."],
         "more": ["The president may now ask another party to try to form a government.",
                  "A new election has not been ruled out."]},
        {"head": ["Foreign ministers meet in {city} to ease border tensions.",
                  "Neighbouring countries agree to restart border talks."],
         "lead": ["Foreign Minister {minister} said after the meeting that both sides had agreed to reopen two "
                  "crossing "
                  "points.",
                  "It was the first meeting between the two governments since the ambassadors were recalled last "
                  "year."],
         "more": ["A joint commission will meet again in {month}.",
                  "Opposition parties in both countries criticised the talks."]},
        {"head": ["Thousands protest against pension reform in {city}.",
                  "Demonstrators march against plans to raise the retirement age."],
         "lead": ["Unions say more than 50,000 people joined the march to parliament on {weekday}.",
                  "The government wants to raise the retirement age from 65 to 67 over the next ten years."],
         "more": ["Prime Minister {mp} said the reform was necessary and would not be withdrawn.",
                  "Further strikes have been called for next week."]},
        {"head": ["Voters in {region} back more powers for the regional parliament.",
                  "Referendum result in {region} puts pressure on the government."],
         "lead": ["A narrow majority of 52% voted in favour on a turnout of 68%.",
                  "The regional leader said the result gave {region} a mandate to negotiate more powers."],
         "more": ["The national government says the vote is not legally binding.",
                  "Celebrations continued late into the night in the regional capital."]},
        {"head": ["Prime minister reshuffles the cabinet.", "{minister} promoted in a cabinet reshuffle."],
         "lead": ["{minister} becomes {ministry} minister, while {minister2} moves to the foreign ministry.",
                  "Prime Minister {mp} brought in several younger MPs in an attempt to revive the government's "
                  "fortunes."],
         "more": ["Three ministers left the government.", "The changes come ahead of local elections in {month}."]},
        {"head": ["{mp} elected mayor of {city}.", "New mayor for {city} after a close race."],
         "lead": ["{mp}, of {party}, won by fewer than 900 votes after a recount.",
                  "{mp} promised to build more affordable homes and make buses free for pupils."],
         "more": ["Turnout was just under 40%.", "The outgoing mayor did not stand again."]},
        {"head": ["Police investigate claims against a former minister.",
                  "Inquiry opened into the award of a road-building contract."],
         "lead": ["Prosecutors are examining whether former Transport Minister {minister} accepted payments from a "
                  "construction company.",
                  "{minister} denies any wrongdoing and says the claims are politically motivated."],
         "more": ["Opposition MPs have demanded that the contract be suspended.",
                  "The anti-corruption office is expected to report in {month}."]},
        {"head": ["Government survives a vote of no confidence.",
                  "Prime Minister {mp} narrowly wins a confidence vote."],
         "lead": ["The motion, tabled by {party}, was defeated by 198 votes to 191.",
                  "Several members of the governing coalition abstained, a sign of growing unrest on the backbenches."],
         "more": ["The prime minister promised to listen to critics within the coalition.",
                  "Another vote could follow after the budget debate."]},
        {"head": ["Health Minister {minister} pledges 5,000 more nurses.",
                  "Government promises to cut hospital waiting lists."],
         "lead": ["The plan, announced by {party} at its annual conference, would be paid for by a tax on tobacco "
                  "companies.",
                  "{minister} told parliament that no patient should wait more than 18 weeks for an operation."],
         "more": ["Opposition parties said the promise was not backed by enough money.",
                  "Nursing unions welcomed the plan but asked for better pay."]},
        {"head": ["Education minister unveils a plan to shorten the school summer holidays.",
                  "Government plans a longer school year."],
         "lead": ["Under the proposals, the summer holidays would be cut from six weeks to four from next year.",
                  "Education Minister {minister} said the change would help pupils who fall behind during the long "
                  "break."],
         "more": ["Teachers' unions have threatened to strike.",
                  "The plan needs the support of {party} to pass parliament."]},
        {"head": ["Constitutional court strikes down the new surveillance law.",
                  "Judges rule that parts of the security law are unconstitutional."],
         "lead": ["The court said the powers given to the police to read private messages went too far.",
                  "The ruling is a blow to Interior Minister {minister}, who had called the law essential."],
         "more": ["The government has six months to rewrite the law.", "Civil rights groups welcomed the decision."]},
        {"head": ["{mp} launches a bid to lead {party}.", "Race to lead {party} begins."],
         "lead": ["{mp} promised to unite the party after its heavy defeat at the last election.",
                  "Party members will choose between {mp} and {mp2} in a postal ballot over the summer."],
         "more": ["The winner will be announced at the party conference in {month}.",
                  "The outgoing leader has not endorsed any candidate."]},
        {"head": ["Government expels a foreign diplomat over spying claims.",
                  "Diplomatic row deepens as an ambassador is summoned."],
         "lead": ["The foreign ministry said the diplomat had 72 hours to leave the country.",
                  "Foreign Minister {minister} accused the embassy of trying to recruit officials as informers."],
         "more": ["The other country has promised to respond in kind.", "MPs from all parties backed the decision."]},
        {"head": ["Parliament debates lowering the voting age to 16.",
                  "Plan to let 16-year-olds vote splits the coalition."],
         "lead": ["Supporters say young people should have a say on issues such as climate change and education.",
                  "{party} opposes the change, arguing that the voting age should match the age of adulthood."],
         "more": ["A vote is expected before the summer recess.",
                  "Several regions already let 16-year-olds vote in local elections."]},
        {"head": ["Government to raise defence spending to 2.5% of national income.",
                  "Defence Minister {minister} announces new spending on the armed forces."],
         "lead": ["The extra money will pay for new patrol ships and better housing for soldiers' families.",
                  "{minister} told parliament the increase was needed because of growing tensions in the region."],
         "more": ["The opposition questioned how the plan would be funded.",
                  "The decision was welcomed by allies at a meeting in {city}."]},
    ],
}


# ---- entailment ------------------------------------------------------------------------------------

ENTAILMENT_LABELS = ("entailment", "not_entailment")
ENTAILMENT_SEED = SEED + 2
PER_FRAME_AND_CLASS = 12  # pairs: 8 train, 2 validation, 2 test
ENTAILMENT_SPLIT = (8, 2, 2)


def _person(name: str, female: bool) -> dict:
    return {"name": name, "he": "she" if female else "he", "him": "her" if female else "him",
            "his": "her" if female else "his"}


# Slot pools as for the topics; a pool of dicts fills several slots at once, each key with the
# slot's suffix ({name2} also gives {he2}, {him2}, {his2}).
ENTAILMENT_POOLS = {
    "name": [_person("Maria", True), _person("Tom", False), _person("Aisha", True), _person("Daniel", False),
             _person("Yuki", True), _person("Peter", False), _person("Fatima", True), _person("Luis", False),
             _person("Grace", True), _person("Omar", False), _person("Anna", True), _person("James", False)],
    "colour": ["red", "blue", "green", "yellow", "black", "white"],
    "item": ["bicycle", "scooter", "backpack", "jacket", "kite", "desk lamp"],
    "relative": ["son", "daughter", "nephew", "niece", "grandson", "granddaughter"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "train_time": ["7:15", "8:40", "6:50", "9:05"],
    "dish": ["a vegetable curry", "a big pot of pasta", "a roast chicken", "a mushroom risotto", "fish tacos",
             "a lentil soup"],
    "friends": ["three", "four", "five", "six", "eight"],
    "event": ["school sports day", "village fair", "open-air concert", "football match", "farmers' market",
              "charity fun run"],
    "town": ["Ashby", "Riverton", "Norbury", "Castlemere", "Halden", "Lindale", "Westbrook", "Marlow Bay"],
    "city": ["London", "Manchester", "Dublin", "Lisbon", "Berlin", "Toronto", "Melbourne", "Madrid"],
    "owner": ["neighbour", "sister", "grandmother", "best friend", "uncle"],
    "when": ["morning", "evening"],
    "month": ["January", "March", "April", "June", "September", "October"],
    "test": ["driving test", "swimming test", "piano exam", "French exam"],
    "attempt": ["second", "third", "fourth"],
    "shop": [{"shop": "bakery", "goods": "fresh bread"}, {"shop": "fish stall", "goods": "fresh fish"},
             {"shop": "café", "goods": "homemade soup"}, {"shop": "farm shop", "goods": "free-range eggs"},
             {"shop": "flower stall", "goods": "cut flowers"}],
    "street": ["Mill Lane", "Station Road", "the high street", "Church Street", "Bridge Street"],
    "band": ["The Lanterns", "Blue Harbour", "The Midnight Foxes", "Juniper Street", "Paper Lions"],
    "tickets": ["800", "1,500", "2,000", "5,000"],
    "limb": ["left arm", "right wrist", "ankle", "collarbone", "left leg"],
    "activity": ["skiing", "playing football", "cycling to work", "climbing", "ice skating"],
    "season": ["winter", "spring", "summer", "autumn"],
    "fruit": ["apples", "pears", "oranges", "plums", "peaches"],
    "share": [{"have": "five", "give": "two", "left": "three", "wrong": "four"},
              {"have": "six", "give": "two", "left": "four", "wrong": "five"},
              {"have": "seven", "give": "three", "left": "four", "wrong": "five"},
              {"have": "eight", "give": "three", "left": "five", "wrong": "six"},
              {"have": "nine", "give": "four", "left": "five", "wrong": "four"},
              {"have": "six", "give": "four", "left": "two", "wrong": "three"},
              {"have": "eight", "give": "five", "left": "three", "wrong": "two"},
              {"have": "seven", "give": "two", "left": "five", "wrong": "six"}],
    "museum": ["city museum", "railway museum", "science museum", "maritime museum", "toy museum"],
    "topic": ["ancient Egypt", "the Vikings", "early flight", "dinosaurs", "the history of medicine", "Roman Britain"],
    "price": ["£5", "£8", "£12", "£15"],
    "degree": [{"er": "taller", "rev": "shorter", "est": "tallest", "rest": "shortest"},
               {"er": "older", "rev": "younger", "est": "oldest", "rest": "youngest"},
               {"er": "heavier", "rev": "lighter", "est": "heaviest", "rest": "lightest"},
               {"er": "faster", "rev": "slower", "est": "fastest", "rest": "slowest"},
               {"er": "stronger", "rev": "weaker", "est": "strongest", "rest": "weakest"}],
    "work": [{"job": "nurse", "place": "hospital"}, {"job": "teacher", "place": "primary school"},
             {"job": "chef", "place": "hotel restaurant"}, {"job": "librarian", "place": "public library"},
             {"job": "pharmacist", "place": "chemist's"}, {"job": "receptionist", "place": "dental surgery"}],
    "animal": ["cat", "kitten", "ginger cat", "black kitten"],
    "where": ["on a roof", "in a drain", "up a tall tree", "behind a garden wall", "under a shed"],
    "meeting": [{"meeting": "team meeting", "ill": "manager"}, {"meeting": "parents' evening", "ill": "head teacher"},
                {"meeting": "book club meeting", "ill": "host"}, {"meeting": "job interview", "ill": "interviewer"},
                {"meeting": "piano lesson", "ill": "teacher"}],
    "move": [{"was_day": "Monday", "new_day": "Thursday", "third_day": "Friday"},
             {"was_day": "Tuesday", "new_day": "Friday", "third_day": "Wednesday"},
             {"was_day": "Wednesday", "new_day": "Friday", "third_day": "Thursday"},
             {"was_day": "Monday", "new_day": "Wednesday", "third_day": "Tuesday"},
             {"was_day": "Tuesday", "new_day": "Thursday", "third_day": "Monday"}],
    "plants": ["tomato plants", "herbs", "strawberry plants", "geraniums", "sunflowers", "chilli plants"],
    "thing": ["camera", "tent", "laptop", "guitar", "bicycle", "drill"],
    "time": ["a week", "two weeks", "three days", "a month", "ten days"],
}

# frames: {"premise": templates, "yes": hypotheses the premise implies, "no": hypotheses it does
# not imply (contradicted or unsupported)}
ENTAILMENT = [
    {"premise": ["{name} bought a {colour} {item} for {his} {relative} on {day}.",
                 "On {day}, {name} bought {his} {relative} a {colour} {item}."],
     "yes": ["{name} bought a {item}.", "{name} bought something for {his} {relative}.",
             "Someone bought a {colour} {item}.", "{name} bought something on {day}.",
             "{name} bought a {colour} {item}."],
     "no": ["{name} bought a {item2}.", "{name} sold a {colour} {item}.", "{name} bought a {colour2} {item}.",
            "{name} bought a {item} for {his} {relative2}.", "{name} did not buy anything on {day}.",
            "Someone gave {name} a {colour} {item}.", "{name} bought the {item} on {day2}."]},
    {"premise": ["{name} missed the {train_time} train to {city} because {he} overslept.",
                 "Because {he} overslept, {name} missed the {train_time} train to {city}."],
     "yes": ["{name} did not catch the {train_time} train to {city}.", "{name} overslept.", "{name} missed a train.",
             "Someone missed the {train_time} train to {city}.", "{name} woke up later than {he} had planned."],
     "no": ["{name} caught the {train_time} train to {city}.",
            "{name} missed the {train_time} train because of a traffic jam.",
            "{name} missed the {train_time} bus to {city}.", "{name} got up early that morning.",
            "The {train_time} train to {city} was cancelled.", "{name} missed the {train_time} train to {city2}."]},
    {"premise": ["{name} cooked {dish} for {friends} friends on {day} evening.",
                 "On {day} evening, {name} made {dish} for {friends} of {his} friends."],
     "yes": ["{name} cooked a meal.", "{name} made dinner for some friends.", "{name} cooked something on {day}.",
             "Someone cooked {dish}.", "{name} cooked for more than two people."],
     "no": ["{name} ordered {dish} from a restaurant.", "{name} cooked for {friends2} friends.",
            "{name} ate alone on {day} evening.", "{name} cooked {dish} on {day2} evening.",
            "{name}'s friends cooked for {him} on {day} evening.", "{name} cooked {dish2}."]},
    {"premise": ["The {event} in {town} was cancelled on {day} because of heavy rain.",
                 "Heavy rain forced the organisers to cancel the {event} in {town} on {day}."],
     "yes": ["The {event} in {town} did not take place as planned.", "It rained heavily in {town} on {day}.",
             "Something in {town} was cancelled because of the weather.", "The {event} in {town} was called off."],
     "no": ["The {event} in {town} went ahead despite the rain.",
            "The {event} in {town} was cancelled because of snow.",
            "The {event} in {town} was moved to the following weekend.", "It was a dry, sunny day in {town}.",
            "The {event} in {town} was cancelled because too few people had bought tickets.",
            "The {event} in {town2} was cancelled on {day}."]},
    {"premise": ["{name} moved from {city} to {city2} last year to start a new job.",
                 "Last year {name} left {city} and moved to {city2} for a new job."],
     "yes": ["{name} used to live in {city}.", "{name} moved to {city2}.", "{name} moved last year.",
             "{name} left {city} last year.", "{name} has lived in {city}."],
     "no": ["{name} moved from {city2} to {city}.", "{name} has never lived in {city}.",
            "{name} moved to {city2} to study.", "{name} moved to {city3} last year.",
            "{name} moved to {city2} ten years ago.", "{name} has always lived in {city2}."]},
    {"premise": ["{name} walks {his} {owner}'s dog every {when}.",
                 "Every {when}, {name} takes {his} {owner}'s dog for a walk."],
     "yes": ["{name} walks a dog.", "{name}'s {owner} has a dog.", "{name} goes for a walk every {when}.",
             "{name} regularly walks a dog that belongs to someone else."],
     "no": ["{name} owns the dog that {he} walks every {when}.", "{name}'s {owner} walks {name}'s dog.",
            "{name} walks {his} {owner}'s dog once a month.", "{name} is afraid of dogs.",
            "{name} walks {his} {owner2}'s dog every {when}.", "{name}'s {owner} has a cat and no dog."]},
    {"premise": ["From {month}, the library in {town} will stay open until nine o'clock on weekdays.",
                 "The library in {town} will stay open until nine o'clock on weekdays from {month}."],
     "yes": ["The library in {town} will be open in the evening on weekdays from {month}.",
             "From {month}, the library in {town} will not close before nine o'clock on weekdays.",
             "The library in {town} will be open on weekdays from {month}.", "There is a library in {town}."],
     "no": ["The library in {town} will close at six o'clock on weekdays from {month}.",
            "From {month}, the library in {town} will stay open until nine o'clock on Sundays.",
            "The library in {town} will close for good in {month}.",
            "The library in {town} will stay open until midnight on weekdays from {month}.",
            "The swimming pool in {town} will stay open until nine o'clock on weekdays from {month}.",
            "The library in {town2} will stay open until nine o'clock on weekdays from {month}."]},
    {"premise": ["{name} passed {his} {test} at the {attempt} attempt.",
                 "After failing it before, {name} finally passed {his} {test} at the {attempt} attempt."],
     "yes": ["{name} passed {his} {test}.", "{name} failed {his} {test} at least once.",
             "{name} took the {test} more than once.", "{name} did not pass {his} {test} at the first attempt."],
     "no": ["{name} passed {his} {test} at the first attempt.", "{name} failed {his} {test} at the {attempt} attempt.",
            "{name} has never taken a {test}.", "{name} has not passed {his} {test} yet.",
            "{name} passed {his} {test2} at the {attempt} attempt.",
            "{name} gave up after failing {his} {test} twice."]},
    {"premise": ["The {shop} on {street} sells {goods} every day except {day}.",
                 "Every day except {day}, the {shop} on {street} sells {goods}."],
     "yes": ["The {shop} on {street} sells {goods}.", "You can buy {goods} at the {shop} on {street} on {day2}s.",
             "The {shop} on {street} does not sell {goods} on {day}s.", "There is a {shop} on {street}."],
     "no": ["You can buy {goods} at the {shop} on {street} on {day}s.",
            "The {shop} on {street} sells {goods} only at weekends.",
            "The {shop} on {street} sells {goods} every day of the week.", "The {shop} on {street} sells {goods2}.",
            "The {shop} on {street2} sells {goods} every day except {day}.",
            "The {shop} on {street} opened last year."]},
    {"premise": ["All {tickets} tickets for the concert by {band} in {town} sold out within an hour.",
                 "The concert by {band} in {town} sold out within an hour, with all {tickets} tickets gone."],
     "yes": ["Tickets for the concert by {band} in {town} sold out.",
             "The concert by {band} in {town} sold out in less than a day.",
             "There are no tickets left for the concert by {band} in {town}.",
             "Many people wanted to see {band} in {town}.",
             "More than five hundred tickets were sold for the concert by {band} in {town}."],
     "no": ["Tickets for the concert by {band} in {town} are still available.",
            "It took a week to sell the tickets for the concert by {band} in {town}.",
            "The concert by {band} in {town} was cancelled.",
            "The tickets for the concert by {band} in {town} were free.",
            "Fewer than five hundred tickets were sold for the concert by {band} in {town}.",
            "The concert by {band} in {town2} sold out within an hour."]},
    {"premise": ["{name} broke {his} {limb} while {activity} last {season}.",
                 "Last {season}, {name} broke {his} {limb} while {activity}."],
     "yes": ["{name} was injured last {season}.", "{name} broke a bone.", "{name} hurt {his} {limb}.",
             "{name} had an accident while {activity}."],
     "no": ["{name} broke {his} {limb2} while {activity} last {season}.",
            "{name} broke {his} {limb} while {activity2} last {season}.", "{name} has never broken a bone.",
            "{name} broke {his} {limb} last {season2}.", "{name} broke {his} {limb} in a car accident."]},
    {"premise": ["{name} had {have} {fruit} and gave {give} of them to {name2}.",
                 "Of the {have} {fruit} {he} had, {name} gave {give} to {name2}."],
     "yes": ["{name} gave {name2} some {fruit}.", "{name} had {left} {fruit} left.",
             "{name2} received {give} {fruit} from {name}.", "{name} did not give all of {his} {fruit} to {name2}.",
             "{name} had more than {give} {fruit}."],
     "no": ["{name} had {wrong} {fruit} left.", "{name2} gave {name} {give} {fruit}.",
            "{name} gave all of {his} {fruit} to {name2}.", "{name} ate {give} {fruit}.",
            "{name} gave {give} {fruit} to {name3}.", "{name} had no {fruit} at all."]},
    {"premise": ["Entry to the {museum} in {town} is free, but the exhibition on {topic} costs {price}.",
                 "The {museum} in {town} is free to visit, although tickets for its exhibition on {topic} cost "
                 "{price}."],
     "yes": ["Visitors do not pay to enter the {museum} in {town}.",
             "Visitors have to pay to see the exhibition on {topic}.",
             "The {museum} in {town} has an exhibition on {topic}.",
             "Not everything at the {museum} in {town} is free."],
     "no": ["The exhibition on {topic} at the {museum} in {town} is free.",
            "Entry to the {museum} in {town} costs {price}.",
            "The {museum} in {town} has no exhibition on {topic}.", "The {museum} in {town} is closed to visitors.",
            "The exhibition on {topic2} at the {museum} in {town} costs {price}.",
            "The {museum} in {town2} is free to visit."]},
    {"premise": ["{name} is {er} than {name2}, and {name2} is {er} than {name3}.",
                 "{name2} is {rev} than {name} but {er} than {name3}."],
     "yes": ["{name} is {er} than {name3}.", "{name3} is {rev} than {name}.", "{name3} is {rev} than {name2}.",
             "{name} is the {est} of the three.", "{name3} is the {rest} of the three."],
     "no": ["{name3} is {er} than {name}.", "{name2} is the {est} of the three.", "{name} is {rev} than {name2}.",
            "{name3} is {er} than {name2}.", "{name} is the {rest} of the three.",
            "{name2} is the {rest} of the three."]},
    {"premise": ["{name} works as a {job} at the {place} in {town} and cycles there every day.",
                 "Every day {name} cycles to the {place} in {town}, where {he} works as a {job}."],
     "yes": ["{name} has a job.", "{name} rides a bicycle to work.", "{name} works in {town}.", "{name} is a {job}.",
             "Someone cycles to the {place} in {town} every day."],
     "no": ["{name} drives to work every day.", "{name} works as a {job2}.", "{name} works at the {place} in {town2}.",
            "{name} is out of work.", "{name} lives next door to the {place} in {town}.",
            "{name} takes the bus to the {place} every day."]},
    {"premise": ["Firefighters in {town} rescued a {animal} that had been stuck {where} for two days.",
                 "A {animal} that had been stuck {where} for two days was rescued by firefighters in {town}."],
     "yes": ["A {animal} was rescued in {town}.", "A {animal} was stuck {where}.",
             "Firefighters in {town} helped an animal.",
             "The {animal} was trapped for more than a day."],
     "no": ["Firefighters in {town} failed to rescue the {animal}.", "A {animal} was stuck {where2} for two days.",
            "The {animal} was stuck for two weeks.", "Neighbours rescued the {animal} without any help.",
            "A dog was rescued by firefighters in {town}.", "The {animal} had been stuck {where} for two hours."]},
    {"premise": ["It was so cold in {town} on {day} that the lake froze.",
                 "On {day} the lake in {town} froze because it was so cold."],
     "yes": ["The lake in {town} froze on {day}.", "It was cold in {town} on {day}.",
             "There was ice on the lake in {town} on {day}.",
             "The temperature in {town} fell below freezing on {day}."],
     "no": ["It was warm in {town} on {day}.", "The lake in {town} did not freeze on {day}.",
            "People went skating on the lake in {town} on {day}.", "It snowed heavily in {town} on {day}.",
            "The lake in {town2} froze on {day}.", "The river in {town} flooded on {day}."]},
    {"premise": ["The {meeting} was moved from {was_day} to {new_day} because the {ill} was ill.",
                 "Because the {ill} was ill, the {meeting} was moved from {was_day} to {new_day}."],
     "yes": ["The {meeting} was rescheduled.", "The {ill} was ill.", "The {meeting} was postponed.", "Someone was ill.",
             "The {meeting} was not held on {was_day}."],
     "no": ["The {meeting} was cancelled.", "The {meeting} was moved because the {ill} was on holiday.",
            "The {meeting} was moved from {new_day} to {was_day}.", "The {meeting} was moved to {third_day}.",
            "The {meeting} took place on {was_day} as planned.", "The {ill} was too busy to attend the {meeting}."]},
    {"premise": ["{name} forgot to water {his} {plants} while {he} was on holiday, and most of them died.",
                 "Most of {name}'s {plants} died because {he} forgot to water them while {he} was on holiday."],
     "yes": ["{name} went on holiday.", "Some of {name}'s {plants} died.",
             "{name} did not water {his} {plants} while {he} was away.", "{name} had {plants}."],
     "no": ["All of {name}'s {plants} survived.", "{name}'s neighbour watered the {plants} every day.",
            "{name} stayed at home all summer.", "{name}'s {plants} died because of a frost.",
            "{name}'s {plants2} died while {he} was on holiday.", "{name} gave {his} {plants} to a neighbour."]},
    {"premise": ["{name} borrowed {name2}'s {thing} and returned it {time} later with a scratch on it.",
                 "{name2} lent {his2} {thing} to {name}, who gave it back {time} later with a scratch on it."],
     "yes": ["{name} returned {name2}'s {thing}.", "{name2}'s {thing} got scratched.", "{name2} owns a {thing}.",
             "{name} had {name2}'s {thing} for {time}.", "Someone borrowed {name2}'s {thing}."],
     "no": ["{name} never returned {name2}'s {thing}.", "{name2} borrowed {name}'s {thing}.",
            "{name} returned the {thing} in perfect condition.", "{name} kept {name2}'s {thing} for {time2}.",
            "{name} bought {name2}'s {thing}.", "{name} borrowed {name2}'s {thing2}."]},
]


# ---- composing from slots --------------------------------------------------------------------------

def _fields(templates) -> list:
    return sorted({name for template in templates for _, name, _, _ in string.Formatter().parse(template) if name})


def _draw(templates, pools: dict, rng: random.Random) -> dict:
    """Values for every slot the templates name, distinct within a pool ({team} != {team2})."""
    owner = {key: pool for pool, values in pools.items() if isinstance(values[0], dict) for key in values[0]}
    wanted = {}  # pool -> suffixes
    for name in _fields(templates):
        base = name.rstrip("0123456789")
        pool = owner.get(base, base)
        if pool not in pools:
            raise KeyError(f"no pool for slot {{{name}}}")
        wanted.setdefault(pool, set()).add(name[len(base):])
    slots = {}
    for pool in sorted(wanted):
        suffixes = sorted(wanted[pool])
        for suffix, value in zip(suffixes, rng.sample(pools[pool], len(suffixes))):
            if isinstance(value, dict):
                slots.update({key + suffix: v for key, v in value.items()})
            else:
                slots[pool + suffix] = value
    return slots


def _fill(template: str, slots: dict) -> str:
    text = template.format(**slots)
    return text[0].upper() + text[1:]


def _unique(make, n: int, seen: set, tries: int = 2000) -> list:
    out = []
    for _ in range(tries):
        item = make()
        if item["text"] not in seen:
            seen.add(item["text"])
            out.append(item)
            if len(out) == n:
                return out
    raise RuntimeError(f"only {len(out)} distinct texts of {n} after {tries} tries; add sentences or slot values")


def _split(items: list, sizes, splits: dict) -> None:
    start = 0
    for name, size in zip(("train", "validation", "test"), sizes):
        splits[name] += items[start:start + size]
        start += size


def compose_topic(frame: dict, rng: random.Random) -> str:
    """The lead alone, headline + lead, or headline + lead + a follow-up sentence."""
    n = rng.choice((1, 2, 2, 2, 3, 3))
    parts = [rng.choice(frame["lead"])]
    if n >= 2:
        parts.insert(0, rng.choice(frame["head"]))
    if n == 3:
        parts.append(rng.choice(frame["more"]))
    slots = _draw(parts, TOPIC_POOLS, rng)
    return " ".join(_fill(part, slots) for part in parts)


def build_topics(seed: int = TOPIC_SEED):
    """{"train": [...], "validation": [...], "test": [...]} of news texts with their topic."""
    rng = random.Random(seed)
    splits = {"train": [], "validation": [], "test": []}
    seen = set()
    for label, name in enumerate(TOPIC_LABELS):
        for frame in TOPICS[name]:
            def make():
                return {"text": compose_topic(frame, rng), "label": label, "label_text": name}
            _split(_unique(make, PER_FRAME, seen), TOPIC_SPLIT, splits)
    for split in splits.values():
        rng.shuffle(split)
    return splits


def compose_pair(frame: dict, entailed: bool, rng: random.Random):
    premise = rng.choice(frame["premise"])
    hypothesis = rng.choice(frame["yes" if entailed else "no"])
    slots = _draw([premise, hypothesis], ENTAILMENT_POOLS, rng)
    return _fill(premise, slots), _fill(hypothesis, slots)


def build_entailment(seed: int = ENTAILMENT_SEED):
    """{"train": [...], "validation": [...], "test": [...]} of premise / hypothesis pairs."""
    rng = random.Random(seed)
    splits = {"train": [], "validation": [], "test": []}
    seen = set()
    for frame in ENTAILMENT:
        for label, name in enumerate(ENTAILMENT_LABELS):
            def make():
                premise, hypothesis = compose_pair(frame, label == 0, rng)
                return {"premise": premise, "hypothesis": hypothesis, "text": premise + " " + hypothesis,
                        "label": label, "label_text": name}
            _split(_unique(make, PER_FRAME_AND_CLASS, seen), ENTAILMENT_SPLIT, splits)
    for split in splits.values():
        rng.shuffle(split)
    return splits


BUILDERS = {"reviews": build, "topics": build_topics, "entailment": build_entailment}


def main(folder: Path = Path(__file__).parent / "tasks") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for task, builder in BUILDERS.items():
        for split, records in builder().items():
            path = folder / f"{task}_{split}.jsonl"
            with path.open("w") as f:
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
            print(f"{path}: {len(records)} examples")


if __name__ == "__main__":
    main()
