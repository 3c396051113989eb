"""A small built-in sentiment set (hand-written for this project) for the offline demo.

Used only when SST-2 is not found. 1 = positive, 0 = negative.
"""

_POSITIVE = """\
A warm, funny and beautifully acted film.
The best thing I have seen in the cinema this year.
Smart writing and a lead performance that lingers.
I laughed, I cried, and I would watch it again tomorrow.
A gorgeous score carries every scene.
The story is simple but told with real heart.
Charming from the first frame to the last.
The director makes every minute count.
A clever, moving and surprisingly tender drama.
An inventive thriller with a great final twist.
The cast has wonderful chemistry.
Visually stunning and emotionally honest.
It is rare to find a comedy this sharp.
A joyful, generous movie about friendship.
The dialogue sparkles and the pacing is perfect.
Every performance feels lived in and true.
A triumph of small-scale storytelling.
I left the theatre smiling.
Bold, beautiful and completely absorbing.
A delightful surprise with a lot to say.
The animation is lovely and the jokes land.
Quietly powerful and superbly made.
An uplifting story that earns its tears.
One of the most satisfying endings in years.
Tense, witty and expertly directed.
Fresh, fun and full of life.
A moving portrait of a family in crisis.
The kind of film that stays with you for days.
Brilliant acting lifts an already strong script.
A rich and rewarding experience.
Funny, sweet and never boring.
The photography alone is worth the ticket.
A gripping mystery with real emotional weight.
A confident debut from a talented new director.
Heartfelt and hilarious in equal measure.
It handles a difficult subject with grace.
The music and images blend into something magical.
An excellent adventure for the whole family.
A thoughtful film that respects its audience.
Simply wonderful.
"""

_NEGATIVE = """\
A dull, lifeless film that goes nowhere.
The worst thing I have seen in the cinema this year.
Clumsy writing and a lead performance that grates.
I checked my watch every ten minutes.
The score is loud and the scenes are empty.
The story is simple and told without any heart.
Tedious from the first frame to the last.
The director wastes every minute.
A silly, shallow and painfully slow drama.
A predictable thriller with a lazy final twist.
The cast has no chemistry at all.
Ugly to look at and emotionally false.
It is rare to find a comedy this unfunny.
A joyless, cynical movie about nothing.
The dialogue is wooden and the pacing drags.
Every performance feels forced and fake.
A mess of half-finished ideas.
I left the theatre annoyed.
Loud, ugly and completely forgettable.
A disappointing sequel with nothing to say.
The animation is cheap and the jokes fall flat.
Overlong, overwrought and badly made.
A manipulative story that never earns its tears.
One of the most frustrating endings in years.
Confusing, humourless and poorly directed.
Stale, boring and out of ideas.
A shallow portrait of a family nobody cares about.
The kind of film you forget before you reach the car.
Bad acting sinks an already weak script.
A long and unrewarding experience.
Unfunny, sour and deeply boring.
The photography is muddy and the sound is worse.
A muddled mystery with no stakes at all.
A clumsy debut that shows little talent.
Neither funny nor moving, just tiresome.
It handles a serious subject with no care.
The music and images never come together.
A tiresome adventure that even children will hate.
A lazy film that insults its audience.
Simply awful.
"""

REVIEWS = [(line, 1) for line in _POSITIVE.splitlines()] + [
    (line, 0) for line in _NEGATIVE.splitlines()
]
