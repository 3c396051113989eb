# ruff: noqa: E501 (one review per line, and some reviews run to a few sentences)
"""The built-in sentiment set of the offline demo: short reviews written for this project.

Used when SST-2 is not found (or with ``sklearn-albert demo --data builtin``). Films and
products, balanced, from one word to a few sentences; some turn on a negation ("not bad at
all") or a "but", and every one has a clear label. 1 = positive, 0 = negative.

``REVIEWS`` (470) is what the demo's grid search sees. ``HELD_OUT_REVIEWS`` (150) is its
test set: written after the demo's method (the grid over pooling, layer and C) was fixed,
so no choice was made by looking at it.
"""

_POSITIVE_FILMS = """\
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
I went in with low expectations and came out grinning.
Not a single wasted scene in the whole thing.
The two leads are magnetic together.
A smart, tightly plotted heist film that never cheats.
The final act had the whole audience cheering.
Gentle, wise and often very funny.
I have already recommended it to everyone I know.
It takes a tired genre and makes it feel new again.
The costumes, the sets and the lighting are all superb.
A documentary that is as thrilling as any action film.
The child actors are natural and never cloying.
Her performance is fearless, and it anchors the film.
The slow start pays off in a stunning second half.
I could not look away.
A sweet little romance that knows exactly what it is.
Sharp satire with a big warm heart underneath.
The script trusts its viewers to keep up, and that is a pleasure.
One of the finest war films I have seen.
Wonderfully odd, and oddly wonderful.
The fight scenes are clear, inventive and thrilling.
Beautifully paced, with a payoff that feels earned.
A haunting ghost story that relies on mood, not cheap scares.
It made me want to call my parents and tell them I love them.
The humour is dry and it works every time.
Even the small roles are cast perfectly.
A rare sequel that improves on the original.
Moving without ever being sentimental.
I did not expect a film about chess to be this exciting.
An affectionate, hilarious look at life in a small town.
The soundtrack is fantastic and used with real wit.
Worth seeing on the biggest screen you can find.
Not perfect, but easily the most enjoyable film of the summer.
A clever script, crisp editing and a terrific cast.
It is a genuinely scary horror film, which is rare these days.
The ending left me in tears, in the best way.
Every frame looks like a painting.
A superb adaptation that honours the novel.
Witty, fast and endlessly charming.
The villain is chilling and the hero is easy to root for.
A lovely, quiet film about growing old with dignity.
It never talks down to kids, and adults will love it too.
Terrific entertainment from beginning to end.
The best performance of his career.
I was hooked within five minutes.
The twists are surprising but make perfect sense.
A bold, original vision, brilliantly realised.
The plot is thin, but the acting and the music more than make up for it.
Tender, funny and full of small truths.
This is how you make a musical.
A thrilling ride with characters you actually care about.
So funny that I missed lines because the audience was laughing.
A beautifully observed drama about two sisters.
I have seen it three times and it gets better each time.
The special effects serve the story instead of drowning it.
Clear-eyed, compassionate and superbly acted.
A crowd-pleaser in the best sense.
Nothing about it feels forced.
The pacing is brisk and the jokes keep coming.
An unforgettable film.
A masterclass in building suspense.
The writing is so good that the long running time flies by.
Honest, heartbreaking and ultimately hopeful.
Great fun, with a surprisingly thoughtful core.
It deserves every award it gets.
A small film with an enormous heart.
My kids loved it and so did I.
The mystery kept me guessing right until the last scene.
A spirited, colourful adventure.
I never once checked the time.
Thoughtful science fiction, full of ideas and feeling.
A joy to watch.
The cinematography is breathtaking.
Delivers everything the trailer promised and more.
The film's quiet moments are its strongest.
Far better than I expected.
A wonderfully acted, elegantly written period drama.
Clever, heartfelt and laugh-out-loud funny.
There is real craft in every scene.
A brave film that is not afraid to be gentle.
The cast is clearly having a great time, and so did I.
The best animated film in a long while.
An excellent thriller, lean and tense.
Rewarding, rich and completely engrossing.
It is not flashy, but it is deeply satisfying.
I would happily watch it again tonight.
A loving tribute to the films of the seventies.
Inspiring without being preachy.
The performances are uniformly excellent.
A clever comedy that never runs out of steam.
Loved it.
Highly recommended.
Pure magic.
It is not a film for everyone, but I adored it.
Some scenes run long, yet the whole is wonderful.
I don't usually like musicals, and I loved this one.
Never dull, never cheap, always honest.
I can't remember the last time a film made me laugh this hard.
Not bad at all; in fact, it is very good.
There is nothing I would change about it.
It is hard to find fault with a film this well made.
I almost skipped this one because of the title. I am very glad I didn't: it is funny, warm and beautifully made.
The first twenty minutes are slow, and I worried. Then the story takes hold and never lets go, right up to a perfect final shot.
My daughter watched it twice in one weekend, and I happily sat through it both times. The songs are catchy and the story has real heart.
It is an old-fashioned adventure in the best sense: clear stakes, a hero worth cheering and a villain you love to hate.
The acting is subtle, the writing is precise, and the ending is one of the most moving I have seen in years.
"""

_POSITIVE_PRODUCTS = """\
Works exactly as described and arrived a day early.
The battery easily lasts a full week.
Sturdy, light and easy to clean.
Best kettle I have ever owned.
Setting it up took a couple of minutes and it has worked perfectly since.
The sound quality is amazing for the price.
Comfortable enough to wear all day.
My old blender broke after a year; this one is far better.
The instructions were clear and assembly was painless.
Great value, and it feels much more expensive than it was.
I bought a second one for my sister.
Quiet, powerful and very easy to use.
The fabric is soft and has survived dozens of washes.
Customer service replaced a missing part within a day.
Fits perfectly and looks great.
Does the job brilliantly.
The screen is bright and sharp even in sunlight.
These headphones are a joy on long flights.
Charges fast and holds its charge well.
Solid build, no rattles, no complaints.
My coffee has never tasted better.
Exactly what I needed for my small kitchen.
The app is simple and the connection never drops.
I was sceptical, but it really does work.
Not cheap, but worth every penny.
The zips are strong and the pockets are well placed.
Keeps drinks cold all day, even in a hot car.
Five stars, would buy again.
The keyboard feels great to type on.
Lightweight and still very durable.
The colours are exactly as shown in the pictures.
My dog loves this bed and sleeps in it every night.
It heats up quickly and cooks evenly.
The camera takes lovely photos in low light.
No more tangled cables; this organiser is brilliant.
A well made tool that feels good in the hand.
Very happy with this purchase.
It has not let me down once in six months.
The mattress is firm but comfortable, and my back pain is gone.
Easy to fold away, which matters in a small flat.
Packaging was minimal and the product was flawless.
The vacuum picks up everything, even pet hair.
Great little speaker with surprisingly deep bass.
It does one thing and does it extremely well.
The print quality is crisp and the ink lasts.
These boots kept my feet dry through a week of muddy hikes.
Simple to install, with excellent instructions.
I use it every day and it still looks new.
A thoughtful design with no wasted features.
Arrived well packed and works like a charm.
The lamp gives a warm, pleasant light.
Feels premium and performs even better.
I never expected a budget phone to be this good.
The handle stays cool and the pan is truly non-stick.
Excellent quality for the money.
The seller was helpful and the item is perfect.
The game is addictive and beautifully designed.
This book was impossible to put down.
The chair stays comfortable through long working days.
Reliable, fast and quiet: everything I wanted.
The strap is comfortable and the watch keeps perfect time.
It's not fancy, but it works flawlessly.
The hotel room was spotless and the staff were lovely.
Delicious food and friendly, quick service.
The course was clear and I learned a lot.
Worth it for the battery life alone.
Cleaning it takes seconds.
The sheets are soft, cool and beautifully stitched.
Highly recommended to anyone who cooks at home.
My only regret is not buying it sooner.
A superb little gadget.
It exceeded my expectations in every way.
The backpack is roomy and comfortable even when full.
Strong suction, long battery life, easy to empty.
Excellent, just excellent.
Great product, fast delivery, no problems at all.
The picture quality on this TV is stunning.
A brilliant toy that keeps my kids busy for hours.
The tent went up in minutes and stayed dry in heavy rain.
I love how easy this is to carry around.
The price put me off at first, but I have no regrets.
I had doubts about the size, but it fits beautifully.
Never had a single problem with it.
The noise cancelling is so good that I forget I am on a train.
A lovely gift; my mother uses it every morning.
I bought this vacuum after my old one died. It is lighter, quieter and far more powerful, and the battery lasts through the whole flat.
We have used this tent on four camping trips now. It is quick to pitch, roomy for two adults, and it stayed dry through a night of storms.
The blender is heavy, solid and easy to clean. Smoothies come out silky every time, and it is much quieter than I expected.
After a month of daily use these running shoes still feel brand new. Light, supportive and comfortable from the very first run.
Setup was simple, the picture is gorgeous, and the remote is the first one I have ever liked using.
"""

_NEGATIVE_FILMS = """\
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
I walked out after forty minutes.
Not funny, not clever, and not worth the ticket.
The plot makes no sense and the characters are paper thin.
Endless shouting and explosions, and no story at all.
The jokes are so stale that nobody in the cinema laughed.
A lazy remake that adds nothing to the original.
Every twist is obvious long before it arrives.
The lead looks bored in every scene, and so was I.
An overlong, self-important slog.
I kept waiting for it to get better, and it never did.
The editing is so choppy that the action is impossible to follow.
A horror film with no scares and no atmosphere.
The script is full of clichés and dead lines.
What a waste of a talented cast.
It tries to be deep and ends up merely dull.
I regret buying a ticket.
The romance is unconvincing and the leads have no spark.
Painfully long and very, very slow.
The villain is a cartoon and the hero is worse.
A noisy, empty blockbuster.
The ending is a cheat that undoes everything before it.
The songs are forgettable and the dancing is stiff.
A tired comedy that thinks insults are jokes.
It never decides what kind of film it wants to be.
The effects look cheap and the story looks cheaper.
I nearly fell asleep during the big battle scene.
This sequel should never have been made.
Not a single character behaves like a real person.
Preachy, heavy-handed and dull.
The mystery is solved by a coincidence, which is cheating.
A lifeless adaptation that misses everything good about the book.
The dialogue made the audience groan.
There is nothing here worth your time.
A muddled, confusing mess.
The pacing is glacial.
The children in the audience were bored, and so were the parents.
It is a thriller without a single thrill.
The voice acting is flat and the animation is ugly.
Badly written, badly acted and badly shot.
The film confuses being loud with being exciting.
I could not wait for it to end.
A dreary, joyless experience.
The director seems to have no idea how to end a scene.
The first ten minutes are fine; the rest is a disaster.
Its message is delivered with a sledgehammer.
A charmless comedy with one joke repeated endlessly.
The war scenes are so shaky that I felt ill.
I have rarely been so bored in a cinema.
It is neither scary nor funny, just embarrassing.
The story collapses in the second half.
Every performance is wooden.
A sour, mean-spirited film.
The plot holes are big enough to drive a bus through.
It wants to be clever, but it is only smug.
An ugly, cynical cash grab.
The music drowns out the dialogue, which is probably a mercy.
Don't bother.
Avoid this one.
Forgettable in every way.
The trailer showed all the good bits, and there were only three.
A tedious documentary that says nothing new.
The lead actor cannot carry the film.
I did not care what happened to anyone.
A cheap-looking thriller with a silly twist.
It insults the intelligence of anyone watching.
Hollow, sentimental and far too long.
The humour is crude and the heart is missing.
The camera work is amateurish.
A frustrating film that wastes a great idea.
Nothing happens for the first hour, and then nothing happens faster.
I wanted to like it, but it is simply boring.
The characters are unpleasant and the story is pointless.
It feels like a first draft that nobody bothered to fix.
A poor imitation of better films.
The big finale is confusing and anticlimactic.
I left feeling cheated.
Not even the great soundtrack can save it.
A clumsy, heavy drama that never finds its footing.
The worst film of the year, easily.
The action is dull and the quiet scenes are duller.
A mind-numbing parade of clichés.
The comedy falls flat and the drama feels fake.
Grim, dull and pointless.
It drags on long after the story is over.
Terrible.
The script seems to have been written in an afternoon.
A disappointing film from a director who used to be great.
The animation is pretty, but the story is so dull that it does not matter.
A thriller that is somehow both rushed and boring.
Even the popcorn was more interesting.
It looks beautiful, but the story is empty.
The first half is promising; the second half falls apart.
Not scary, not funny, and not over soon enough.
I don't understand the good reviews at all.
It is not the worst film I have seen, but it is close.
There is nothing to recommend here.
The idea is clever, but the execution is dreadful.
I had high hopes, and they were crushed.
I can't say I enjoyed a minute of it.
I almost walked out in the first half hour. I stayed to the end, hoping it would improve, and it only got worse.
The trailer promised a clever thriller. What we got is a slow, confusing film with a twist that anyone could see coming.
My daughter lost interest after twenty minutes, and I honestly could not blame her. The songs are forgettable and the story is a mess.
The acting is stiff, the writing is clumsy, and the ending is so abrupt that people around me laughed at it.
It is a sequel in the worst sense: the same jokes, the same plot and none of the charm that made the first one work.
I really wanted to like this film, and some of the images are lovely. But the story is hollow and the characters never come alive.
"""

_NEGATIVE_PRODUCTS = """\
Stopped working after two weeks.
The battery barely lasts an afternoon.
Flimsy plastic that cracked the first time I used it.
Nothing like the pictures; the colour is completely different.
Customer service ignored three emails.
The lid leaks every single time.
Far too noisy to use in the evening.
The instructions are useless and two screws were missing.
It arrived broken and the return process was a nightmare.
Uncomfortable after ten minutes of wear.
The app keeps crashing and the connection drops constantly.
A waste of money.
The zip broke on the first trip.
It smells of chemicals even after a week.
The sound is tinny and distorted at any volume.
Overpriced for what you get.
Cheaply made and already falling apart.
It takes forever to heat up and cooks unevenly.
The screen scratches far too easily.
Would not buy again.
One star, and only because zero is not allowed.
The size chart is wrong; it does not fit at all.
The coating started peeling after a few washes.
The charger gets worryingly hot.
The pan sticks worse than my old one.
Keeps disconnecting from my phone.
The handle snapped off within a month.
Very disappointed with this purchase.
The fabric is thin and see-through.
It does not do half of what the description claims.
My package arrived a week late and damaged.
The vacuum barely picks up crumbs.
Not worth the price, not even on sale.
The buttons are stiff and the display is hard to read.
The mattress sagged within a few weeks.
It worked fine for a month, then died completely.
The chair wobbles and creaks constantly.
The speaker has no bass and the battery drains fast.
Returned it the next day.
The printer jams on almost every page.
The seller was rude and refused a refund.
My dog chewed through this so-called indestructible toy in an hour.
The boots leaked on the first rainy day.
The camera is blurry unless the light is perfect.
Assembly took three hours and it still is not straight.
It feels cheap and looks even cheaper.
The strap irritated my skin.
The food was cold and the waiter was rude.
The hotel room was dirty and the air conditioning did not work.
The book is dull, and I gave up halfway.
The game crashes every few minutes.
A badly designed gadget that nobody needs.
The kettle leaves a plastic taste in the water.
Not recommended.
It broke the first time I dropped it, from waist height.
The keyboard misses keystrokes all the time.
The course was disorganised and the teacher unprepared.
The tent collapsed in light wind.
Way too small, and the material feels like paper.
Poor quality and terrible support.
The watch loses five minutes a day.
The blender cannot even crush ice.
The paint chipped off within days.
I regret this purchase.
The pockets are tiny and the straps dig into your shoulders.
The lamp flickers and buzzes.
It looked nice but stopped charging after a month.
Nothing but problems since the day it arrived.
The headphones hurt my ears and the sound is muddy.
Do not waste your money on this.
The TV picture is dim and the colours are washed out.
The sheets pilled after a single wash.
The drill overheats after a few minutes.
A frustrating product with a terrible manual.
Total junk.
The phone freezes several times a day.
The shoes fell apart in a month.
Delivery was slow and the box was crushed.
Loud, slow and unreliable.
Not what I ordered, and nobody answers my calls.
It looks sturdy, but it broke within a week.
Great design, shame it never works.
I wanted to love it, but it is uncomfortable and badly made.
The remote stopped responding after a few days.
The suitcase wheel came off on my first trip.
I bought this vacuum to replace my old one. It is heavier, louder and weaker, and the battery dies before I finish one room.
We took this tent on one camping trip. A pole snapped on the first night, and the rain came straight through the seams.
The blender rattles, leaks from the base and leaves chunks of ice in every smoothie. It went back after three days.
After two weeks of use these running shoes are already coming apart at the seams, and they rubbed my heels raw.
Setup took an hour, the picture is dim and blotchy, and the remote stops working unless you stand right in front of the screen.
"""


_HELD_OUT_POSITIVE = """\
A funny, generous comedy with a great ensemble.
The story grabbed me early and never loosened its grip.
I was smiling all the way home.
A gorgeous, intelligent drama that rewards patience.
The lead gives a wonderfully understated performance.
An exciting adventure that the whole family can enjoy.
Every scene is carefully crafted and full of life.
The best comedy I have seen in ages.
Touching, clever and beautifully shot.
The plot twists are handled with real skill.
I did not want it to end.
A charming story told with warmth and wit.
The actors make even the quiet scenes riveting.
It is a beautiful film about loss and hope.
Surprisingly moving, and very funny too.
I can't recommend it enough.
Not a boring minute in it.
A brilliant thriller with a smart script.
The music is glorious and the dancing is joyous.
Strong performances and a story worth telling.
It is rare for a film to be this entertaining and this thoughtful.
A sharp, confident and very enjoyable debut.
The animation is rich and the characters are lovable.
I was gripped from the opening scene.
An inspiring true story, told with restraint.
My whole family enjoyed it, from the kids to my grandfather.
The dialogue is witty and the timing is perfect.
The slow burn is worth it; the final hour is superb.
A tender love story that never feels false.
It is hard to imagine a better version of this story.
Smart, stylish and great fun.
I would see it again in a heartbeat.
Not the film I expected, but a better one.
A wonderful cast in a wonderful film.
Beautifully made and deeply felt.
A triumph.
Thrilling, funny and full of heart.
The director handles the big scenes and the small ones equally well.
I left the cinema wanting to tell everyone about it.
An honest, affecting portrait of friendship.
Works perfectly and was simple to set up.
The battery lasts for days, even with heavy use.
Well built, good looking and easy to use.
Comfortable, warm and very well made.
The best toaster we have owned.
It arrived quickly and works exactly as advertised.
The sound is clear and full, and the bass is strong.
Great quality for a very fair price.
I am really pleased with this jacket; it keeps me dry and warm.
The drill is powerful and the battery lasts all day.
Easy to clean and it looks lovely on the counter.
The pillow is soft but supportive, and I sleep much better.
The support team solved my problem within an hour.
This little fan is quiet and surprisingly powerful.
It does everything I need, and it does it well.
I have no complaints at all after a year of use.
Beautifully designed and a pleasure to use every day.
The knife is sharp, well balanced and holds its edge.
It was easy to assemble and feels very solid.
The earbuds fit well and sound fantastic.
Fast shipping, great packaging, perfect product.
My children love this game and play it every evening.
The restaurant was cosy and the food was excellent.
The rice cooker makes perfect rice every single time.
Far better than the expensive brand I used before.
The monitor is sharp, bright and easy on the eyes.
A great purchase; I would buy it again without hesitation.
It's small, light and does a great job.
The coat is warm, well cut and beautifully finished.
Excellent, reliable and worth the money.
I didn't expect much for the price, but it is excellent.
The printer is quick and the pages come out clean.
The hotel was quiet, clean and in a great location.
This water bottle has not leaked once.
A solid, well made product that I use every day.
"""

_HELD_OUT_NEGATIVE = """\
A boring film with a story that goes in circles.
The acting is stiff and the jokes are painful.
I was bored within the first ten minutes.
A mess of a plot and a cast that seems lost.
The ending makes no sense at all.
It is far too long and says far too little.
The dialogue is clumsy and the characters are dull.
A poorly made sequel that nobody asked for.
I gave up halfway through.
The effects are cheap and the acting is worse.
An unpleasant, pointless film.
The comedy is lazy and the timing is off.
It never builds any tension.
Predictable from start to finish.
The story drags and the characters are forgettable.
I have seen better films on a long-haul flight with the sound off.
Not worth seeing, even for free.
The romance is flat and the drama is silly.
A confusing plot that is not worth untangling.
The horror is tame and the jokes are worse.
Loud, dumb and exhausting.
The film has no idea what it wants to say.
A dull, grey and humourless drama.
The cast looks as bored as the audience.
It wastes a promising idea on a lazy script.
The action scenes are a blur and the story is thin.
It is not clever, it is not funny and it is not short.
A feeble, tired comedy.
The twist is silly and the ending is worse.
I felt nothing for any of the characters.
An ugly film in every sense.
The musical numbers are flat and the songs are dull.
A disappointing mess from start to finish.
The plot is thin and the pacing is worse.
A failure on almost every level.
It looks expensive but feels completely empty.
A children's film that bored my children.
I was glad when the credits rolled.
A dreadful script sinks a decent cast.
It never comes to life.
It broke after a week of normal use.
The battery dies by lunchtime.
Badly made and far too expensive.
The product looks nothing like the photos.
It stopped charging after a few days.
The lid does not close properly and it leaks.
Much too loud and not very powerful.
Poor quality; the stitching came apart right away.
The instructions make no sense and parts were missing.
Uncomfortable and the wrong size.
The support team never replied.
The sound crackles and cuts out.
Don't buy this; it is junk.
The toaster burns one side and leaves the other raw.
The jacket let the rain straight through.
It takes ages to charge and dies quickly.
The plastic feels brittle and cheap.
Not worth the money at all.
The pillow went flat after a week.
It arrived late, scratched and missing the cable.
The restaurant was noisy and the food was bland.
The knife was blunt out of the box.
The earbuds keep falling out and sound thin.
A flimsy product that did not last.
The monitor has dead pixels and a dim corner.
It keeps losing the connection.
The hotel was noisy and the bed was awful.
The rice cooker burns the rice on the bottom.
I would not recommend it to anyone.
The fan rattles and barely moves any air.
The water bottle leaks in my bag.
It is cheap, but it is not even worth that.
The coat looks nice, but the zip broke on day one.
The game is buggy and keeps freezing.
Very poor value; I am sending it back.
"""


def _lines(block, label):
    return [(line, label) for line in block.splitlines()]


REVIEWS = (
    _lines(_POSITIVE_FILMS, 1)
    + _lines(_POSITIVE_PRODUCTS, 1)
    + _lines(_NEGATIVE_FILMS, 0)
    + _lines(_NEGATIVE_PRODUCTS, 0)
)
"""The training part: ``(text, label)`` pairs, positives first."""

HELD_OUT_REVIEWS = _lines(_HELD_OUT_POSITIVE, 1) + _lines(_HELD_OUT_NEGATIVE, 0)
"""The test part, written after the demo's method was fixed: it informed no choice."""

REVIEW_TOPICS = (
    ["film"] * len(_lines(_POSITIVE_FILMS, 1))
    + ["product"] * len(_lines(_POSITIVE_PRODUCTS, 1))
    + ["film"] * len(_lines(_NEGATIVE_FILMS, 0))
    + ["product"] * len(_lines(_NEGATIVE_PRODUCTS, 0))
)
"""What each of ``REVIEWS`` is about, ``"film"`` or ``"product"``, in the same order."""
