export interface Product {
  id: string;
  name: string;
}

const products: Product[] = [
  { id: '42', name: 'The answer' },
  { id: 'featured', name: 'Shadowed by public/products/featured.html' },
];

export function findProduct(id: string | undefined): Product | undefined {
  return products.find((p) => p.id === id);
}
