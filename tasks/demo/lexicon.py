"""Words and sentence patterns the demo family's generators draw from.

Every held-in class has its own cue words (so a tiny model can learn it in minutes), while the
neutral filler sentences shared by all classes give inputs a realistic spread of lengths.
"""

NAMES = [
  "Maria",
  "Tom",
  "Priya",
  "Omar",
  "Lena",
  "Kenji",
  "Ana",
  "David",
  "Fatima",
  "Lucas",
  "Chloe",
  "Ivan",
  "Amara",
  "Noah",
  "Sofia",
  "Ravi",
  "Elena",
  "Marcus",
  "Yara",
  "Jonas",
  "Mei",
  "Diego",
  "Hannah",
  "Samir",
  "Grace",
  "Felix",
  "Nadia",
  "Oscar",
  "Leila",
  "Hugo",
]
CITIES = [
  "Lisbon",
  "Oslo",
  "Nairobi",
  "Lima",
  "Osaka",
  "Toronto",
  "Dublin",
  "Cairo",
  "Quito",
  "Porto",
  "Hanoi",
  "Vienna",
  "Perth",
  "Accra",
  "Bergen",
  "Krakow",
  "Seville",
  "Tunis",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
COLORS = ["red", "blue", "green", "yellow", "black", "white", "grey", "orange", "purple"]
ROOMS = ["kitchen", "garage", "bedroom", "office", "garden", "hallway", "living room", "attic"]
RELATIVES = ["brother", "sister", "uncle", "aunt", "cousin", "neighbour", "daughter", "son"]
SEASONS = ["spring", "summer", "autumn", "winter", "holiday"]

# ---- reviews (sentiment) -------------------------------------------------------------------
PRODUCTS = [
  "kettle",
  "backpack",
  "desk lamp",
  "blender",
  "phone case",
  "tent",
  "toaster",
  "rain jacket",
  "coffee grinder",
  "bicycle pump",
  "office chair",
  "water bottle",
  "alarm clock",
  "pair of headphones",
  "frying pan",
  "umbrella",
  "keyboard",
  "suitcase",
  "garden hose",
  "sleeping bag",
  "board game",
  "vacuum cleaner",
  "reading light",
  "pair of boots",
  "picture frame",
  "tea set",
  "hair dryer",
  "camping stove",
]
POSITIVE_OPENERS = [
  "I absolutely love this {p}.",
  "This {p} is excellent.",
  "What a fantastic {p}!",
  "Best {p} I have ever owned.",
  "The {p} works wonderfully.",
  "I am delighted with this {p}.",
  "This {p} is a real gem.",
  "Great {p}, and a great price too.",
  "Superb {p}, very well made.",
  "I am thrilled with how good this {p} is.",
]
NEGATIVE_OPENERS = [
  "I really regret buying this {p}.",
  "This {p} is terrible.",
  "What a disappointing {p}.",
  "Worst {p} I have ever owned.",
  "The {p} broke after two days.",
  "I am furious about this {p}.",
  "This {p} is a complete waste of money.",
  "Awful {p}, and overpriced too.",
  "Poorly made {p}, it fell apart.",
  "I am very unhappy with this {p}.",
]
POSITIVE_CLOSERS = [
  "Highly recommended.",
  "Five stars from me.",
  "I would happily buy it again.",
  "My whole family loves it.",
  "Worth every penny.",
  "A wonderful purchase.",
]
NEGATIVE_CLOSERS = [
  "Avoid it.",
  "I want my money back.",
  "One star, and that is generous.",
  "I am returning it.",
  "Do not waste your money.",
  "A dreadful purchase.",
]
REVIEW_FILLERS = [
  "It arrived on a {day}.",
  "The box was {color}.",
  "I use it mostly in the {room}.",
  "My {relative} helped me set it up.",
  "It comes with a short manual.",
  "The delivery took {n} days.",
  "I bought it during a {season} sale.",
  "It weighs about {n} pounds.",
  "I had been looking for one for a while.",
  "The instructions were printed in {n} languages.",
  "I ordered it for my {relative}.",
  "The parcel was left by the door on {day}.",
  "It fits on the shelf in the {room}.",
  "I have had it for {n} weeks now.",
  "The label says it was made in {city}.",
  "My {relative} owns the {color} version.",
  "I compared a few models before ordering.",
  "It needed {n} batteries.",
  "The packaging was mostly cardboard.",
  "I checked the size twice before buying.",
  "A friend in {city} suggested this brand.",
  "The colour is closer to {color} than the photo shows.",
  "It replaced an older one from {city}.",
  "I keep it next to the window in the {room}.",
  "The receipt was tucked inside the box.",
  "My {relative} asked where I got it.",
  "I mostly use it at weekends.",
  "It took {n} minutes to unpack.",
  "The courier called before arriving on {day}.",
  "There is a small logo on the side.",
  "I read a few other reviews first.",
]

# ---- news (topic) ----------------------------------------------------------------------------
TEAMS = [
  "the Harbour Sharks",
  "the Valley Rovers",
  "the City Falcons",
  "the North Bears",
  "the River Kings",
  "the Mountain Goats",
  "the Bay Pirates",
  "the Lake Herons",
]
COMPANIES = [
  "Northwind Foods",
  "Acme Motors",
  "Bluepeak Energy",
  "Silverline Bank",
  "Orchid Telecom",
  "Granite Steel",
  "Lumen Retail",
  "Harbor Shipping",
]
ANIMALS = ["frog", "beetle", "orchid", "deep-sea fish", "bat", "lizard", "moth", "coral"]
PLANETS = ["Mars", "Jupiter", "Venus", "Saturn", "the Moon", "a distant comet"]
REGIONS = [
  "the north",
  "the coast",
  "the capital region",
  "the southern valleys",
  "the eastern plains",
  "the islands",
  "the highlands",
]
TOPIC_SENTENCES = {
  0: [
    "{team} beat {team2} {score} in {city} on {day}.",
    "The striker of {team} scored twice in the second half.",
    "{name} won the tennis final after a tense third set.",
    "The coach praised the defence after the match against {team2}.",
    "Fans celebrated as {team} lifted the championship trophy.",
    "The goalkeeper saved a penalty in the final minute.",
    "{name} set a new record in the marathon in {city}.",
    "The league suspended two players after the match.",
  ],
  1: [
    "Shares of {company} rose {n} percent after strong quarterly earnings.",
    "{company} announced plans to open {n} new stores.",
    "The central bank left interest rates unchanged on {day}.",
    "Investors welcomed the merger of {company} and {company2}.",
    "{company} reported record profits and raised its dividend.",
    "The stock market fell as oil prices climbed.",
    "{company} will cut {n} hundred jobs to reduce costs.",
    "Analysts expect inflation to ease by the end of the year.",
  ],
  2: [
    "Researchers in {city} discovered a new species of {animal}.",
    "A telescope captured detailed images of a distant galaxy.",
    "Scientists published a study on the genes of the {animal}.",
    "The space agency launched a probe toward {planet}.",
    "Physicists measured the particle with record precision.",
    "A laboratory in {city} tested a new vaccine on mice.",
    "Biologists tracked the migration of the {animal} for {n} years.",
    "Engineers built a robot that can climb walls like a {animal}.",
  ],
  3: [
    "Heavy rain is expected across {region} on {day}.",
    "Forecasters warned of strong winds along the coast.",
    "Temperatures will drop below freezing overnight in {city}.",
    "A heat wave is set to continue through the weekend in {region}.",
    "Thick fog delayed flights at the airport in {city}.",
    "Snow is forecast for {region}, with up to {n} centimetres.",
    "Thunderstorms may bring hail to {region} late on {day}.",
    "The dry spell will end with showers on {day}.",
  ],
}
TOPIC_LABELS = ["sports", "business", "science", "weather"]
NEWS_FILLERS = [
  "The report was published on {day}.",
  "Officials in {city} declined to comment.",
  "More details are expected later this week.",
  "The story was first reported locally.",
  "A spokesperson confirmed the news by phone.",
  "Local radio in {city} covered the story all morning.",
  "Readers can find updates on our website.",
  "The announcement came shortly after noon.",
]

# ---- facts (entailment) -----------------------------------------------------------------------
# (positive form, negative form, object choices)
FACT_FRAMES = [
  (
    "{x} owns a {o}.",
    "{x} does not own a {o}.",
    ["red bicycle", "small boat", "grey cat", "old piano", "vintage camera", "green van"],
  ),
  ("{x} lives in {o}.", "{x} does not live in {o}.", CITIES),
  (
    "{x} works at the {o}.",
    "{x} does not work at the {o}.",
    ["bakery", "library", "hospital", "post office", "museum", "train station", "bookshop"],
  ),
  (
    "{x} plays the {o}.",
    "{x} does not play the {o}.",
    ["violin", "drums", "guitar", "flute", "cello", "trumpet"],
  ),
  (
    "{x} likes {o}.",
    "{x} does not like {o}.",
    ["spicy food", "jazz", "cold weather", "chess", "long walks", "horror films"],
  ),
  (
    "{x} speaks {o}.",
    "{x} does not speak {o}.",
    ["Spanish", "Japanese", "Swahili", "Polish", "Arabic", "Portuguese"],
  ),
]
FACT_FILLERS = [
  "The neighbours all know each other.",
  "Everyone met at a party last {season}.",
  "They often have dinner together on {day}.",
  "The street is quiet at night.",
  "Most of them grew up near {city}.",
  "Their building has a {color} door.",
  "The group meets at the cafe every {day}.",
  "A {color} tram stops outside their flat.",
  "They share a garden behind the building.",
  "The corner shop closes at {n} o'clock.",
]

# ---- pairs (paraphrase) ---------------------------------------------------------------------
# (past tense phrase, its base form, synonyms in the past tense that keep the meaning). A pair that
# is not a paraphrase negates the event, with one of NEGATIONS.
PAIR_FRAMES = [
  ("bought {o}", "buy {o}", ["purchased {o}", "paid for {o}"]),
  ("arrived in {c}", "arrive in {c}", ["got to {c}", "reached {c}"]),
  ("won the match", "win the match", ["was victorious in the match", "came first in the match"]),
  ("opened the shop", "open the shop", ["unlocked the shop", "started the shop's day"]),
  ("accepted the offer", "accept the offer", ["agreed to the offer", "said yes to the offer"]),
  (
    "remembered the meeting",
    "remember the meeting",
    ["recalled the meeting", "kept the meeting in mind"],
  ),
  ("praised the plan", "praise the plan", ["spoke well of the plan", "applauded the plan"]),
  ("started the engine", "start the engine", ["switched on the engine", "turned on the engine"]),
]
NEGATIONS = ["did not {base}", "failed to {base}", "did not manage to {base}"]
PAIR_OBJECTS = [
  "a used car",
  "a new laptop",
  "the old house",
  "two tickets",
  "a painting",
  "a wooden table",
  "the company",
  "a vintage watch",
]
TIMES = [
  "on {day}",
  "last {season}",
  "yesterday",
  "early in the morning",
  "after lunch",
  "late at night",
  "in {n} minutes",
]

# ---- story (held-out: sentence completion) -----------------------------------------------------
# (situation, ending). Every ending starts with the situation's person: the gold ending continues
# the story of the person in the context, the distractors give the same ending to people the
# context never mentions. None of this wording occurs in the held-in families (a test checks).
STORY_SITUATIONS = [
  ("{x} was thirsty after the long run.", "{x} drank a large glass of water."),
  ("{x} heard the baby crying upstairs.", "{x} went up to comfort the child."),
  ("{x} noticed the plants were drying out.", "{x} watered them with the hose."),
  ("{x} missed the last bus home.", "{x} called a taxi to get back."),
  ("{x} spilled coffee on the desk.", "{x} wiped it up with a cloth."),
  ("{x} could not read the small print.", "{x} put on a pair of glasses."),
  ("{x} felt cold in the drafty hall.", "{x} zipped up a warm jacket."),
  ("{x} found the room too dark to read.", "{x} switched on the lamp."),
  ("{x} forgot the umbrella and it started to rain.", "{x} ran to shelter under a tree."),
  ("{x} had a toothache for three days.", "{x} booked a visit to the dentist."),
  ("{x} wanted to learn to cook.", "{x} signed up for a cooking class."),
  ("{x} locked the keys inside the car.", "{x} phoned a locksmith for help."),
  ("{x} saw smoke coming from the oven.", "{x} turned off the oven at once."),
  ("{x} was late for the train.", "{x} ran all the way to the platform."),
  ("{x} found a wallet on the pavement.", "{x} handed it in at the police station."),
  ("{x} had a big exam the next morning.", "{x} studied late into the evening."),
]
# A second, name-free sentence some contexts get, so the person is not always the first word.
STORY_SETTINGS = [
  "It had been a long and tiring week.",
  "The evening was unusually quiet.",
  "Nobody else was around at the time.",
  "It was the first warm day of the year.",
  "The power had been flickering all afternoon.",
  "It was almost midnight.",
]
