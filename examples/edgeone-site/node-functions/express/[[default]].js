// An Express app mounted at /express: it sees "/" for /express and "/users/7" for /express/users/7.
import express from 'express';

const app = express();
app.use(express.json());

app.get('/', (req, res) => {
  res.json({ app: 'express', path: req.path });
});

app.get('/users/:id', (req, res) => {
  res.json({ app: 'express', user: req.params.id, query: req.query });
});

app.post('/echo', (req, res) => {
  res.status(201).json(req.body);
});

export default app;
