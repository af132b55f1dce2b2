"""Linking reports of the same story across languages (pure functions, no Beam).

`signals.signature` condenses one article into a `StorySignature` (taxonomy entities,
transliterated names, numbers, event days and terms of the title and lead, publication
day); `link.same_story` scores two signatures and `link.THRESHOLD` decides. Figures on
the labelled pairs: `python -m bench.stories_baseline` (tests/eval/stories/).

How a pipeline step should use them (design note; nothing here runs it yet):

- Signature: computed once per article where the tagger runs (it needs the tagger's
  entities and the same title and text), stored beside the article (a small struct:
  a few dozen strings and numbers), never recomputed for old articles.
- Lookback: a new article is compared with the articles of the lake and the batch
  published within `link.MAX_GAP` days of it (undated ones: by fetch date), and only
  with those that share a blocking key with it (an entity id, a name key, a number,
  an event day, or, in one language, a rare lead term), so each article meets tens of
  candidates, not the whole window. `link.weigh` each signature once per run,
  then `link.score(a, b)` per candidate pair.
- Rarity: `link.Rarity.of` over the window's and the batch's signatures (counts, so
  the order does not matter); a link, once decided, is kept: later runs do not re-score
  old pairs, so a changing reference set never moves an existing story.
- Story ids: the batch is processed in a fixed order (publication or fetch time, then
  article id); an article that links to no story founds one whose id derives from its
  own article id (e.g. "story:" + article_id), so reruns and replays give the same ids.
  An article links to the story of its best-scoring candidate (>= `link.THRESHOLD`).
  When it scores >= `link.THRESHOLD` with members of several stories, they merge and
  the older story id wins (earliest first article, then smallest id); the merge is
  recorded (old id -> surviving id) so that readers can follow, and no id is reused.
- A story stays open while its newest article is within the lookback, so a story can
  run longer than `MAX_GAP` days through its follow-ups.
"""
